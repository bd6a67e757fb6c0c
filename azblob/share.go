package azblob

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"reflect"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/deepanalyze/pool"
)

// SharedFactory checks opts and returns a Factory for opts' container
// whose connections the sources of other containers of the same account
// can use, and the pool.Share that lets them: give both to a pool on a
// pool.Budget (Register does so by itself for a source on a Budget, unless
// Options.NoShare is set).
//
// Sources share connections when they reach the same blob endpoint with
// the same credential: the same account key (from a connection string or
// AccountName and AccountKey), or the same Credential value, and the same
// TLSConfig (the same *tls.Config, not an equal one), DialContext and
// DialTimeout. A connection that moves keeps
// its keep-alive HTTPS connection, so the next source's first request
// skips the TCP and TLS handshakes; Share.Bind gives it a client for the
// new container, with that source's retry policy, and sends nothing. A
// source with a SAS token, which grants one container (or a Credential
// that is not a pointer, whose identity cannot be told), shares nothing:
// its Share is the zero Share.
func SharedFactory(opts Options) (pool.Factory[*Conn], pool.Share, error) {
	dial, err := Factory(opts)
	if err != nil {
		return nil, pool.Share{}, err
	}
	opts, retry, scrub, _ := opts.prepare() // Factory has checked them
	group, ok := groupKey(opts, retry)
	if !ok {
		return dial, pool.Share{}, nil
	}
	return dial, pool.Share{
		Group: group,
		Bind: func(_ context.Context, c pool.Connector) error {
			bc, ok := c.(*Conn)
			if !ok {
				return fmt.Errorf("azblob: bind: a %T is not a Blob connection", c)
			}
			return bc.bindTo(opts, retry, scrub)
		},
	}, nil
}

// groupSecret keys the HMAC that stands for an account key in a group's
// name, so that the name can be compared, and shown, without it.
var groupSecret = func() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}()

// groupKey names the connections opts' sources can exchange: the account's
// endpoint, the credential and what the transport is built from; ok is
// false if they cannot be shared.
func groupKey(opts Options, retry policy.RetryOptions) (string, bool) {
	c, err := newConn(opts, retry, newScrubber(nil))
	if err != nil {
		return "", false
	}
	u, err := url.Parse(c.client.URL())
	if err != nil {
		return "", false
	}
	// The account's endpoint: the container's URL less its last segment
	// (Azurite's URLs carry the account in the path).
	account := u.Scheme + "://" + u.Host + strings.TrimSuffix(u.Path, "/"+c.name)
	var k strings.Builder
	fmt.Fprintf(&k, "azblob %s", account)
	switch {
	case opts.Credential != nil:
		v := reflect.ValueOf(opts.Credential)
		if v.Kind() != reflect.Pointer {
			return "", false
		}
		fmt.Fprintf(&k, " entra=%x", v.Pointer())
	case c.sas:
		return "", false
	default:
		name, key := opts.AccountName, opts.AccountKey
		if opts.ConnectionString != "" {
			p := connectionParts(opts.ConnectionString)
			name, key = p["accountname"], p["accountkey"]
		}
		mac := hmac.New(sha256.New, groupSecret)
		mac.Write([]byte(key))
		fmt.Fprintf(&k, " key=%s/%s", name, hex.EncodeToString(mac.Sum(nil))[:16])
	}
	fmt.Fprintf(&k, " tls=%p timeout=%v", opts.TLSConfig, opts.DialTimeout)
	if opts.DialContext != nil {
		fmt.Fprintf(&k, " dial=%x", reflect.ValueOf(opts.DialContext).Pointer())
	}
	return k.String(), true
}
