package azblob_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/azblob"
)

// fakeEntra mints the access tokens an Entra ID credential would: JWTs
// for the storage audience from an Entra issuer, which Azurite's
// `--oauth basic` checks (all but the signature). It records what it was
// asked and what it handed out.
type fakeEntra struct {
	ttl  time.Duration // lifetime of each token; negative: already expired
	fail error         // returned instead of a token when set

	mu      sync.Mutex
	scopes  [][]string
	tokens  []string
	expires []time.Time
}

func (f *fakeEntra) GetToken(_ context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scopes = append(f.scopes, opts.Scopes)
	if f.fail != nil {
		return azcore.AccessToken{}, f.fail
	}
	now := time.Now()
	exp := now.Add(f.ttl)
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	tok := enc(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + enc(map[string]any{
		"aud": "https://storage.azure.com",
		"iss": "https://sts.windows.net/72f988bf-0000-0000-0000-000000000000/",
		"iat": now.Add(-time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": exp.Unix(),
		"oid": fmt.Sprintf("caller-%d", len(f.tokens)),
	}) + "." + base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "signature-%d", len(f.tokens)))
	f.tokens = append(f.tokens, tok)
	f.expires = append(f.expires, time.Unix(exp.Unix(), 0))
	return azcore.AccessToken{Token: tok, ExpiresOn: exp}, nil
}

func (f *fakeEntra) issued() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.tokens)
}

// An Entra ID credential, against an Azurite that checks bearer tokens
// (--oauth basic, over HTTPS): each new connection asks for a token for
// the storage scope and reads and writes with it; a pooled connection
// keeps working after its first token expired (it asks again); an expired
// token is refused with ErrAuth, a failing credential fails the dial
// with ErrAuth and its own error, a hanging one is cut off by the
// caller's context; no token ever shows in an error, a log line or Stats.
func TestEntraCredential(t *testing.T) {
	a, _ := freshAzurite(t, "--oauth", "basic")
	const name = "entra"
	_, err := a.admin(t, name).Create(context.Background(), nil)
	require.NoError(t, err)
	containerURL := fmt.Sprintf("https://127.0.0.1:%d/devstoreaccount1/%s", a.port, name)
	opts := func(cred azcore.TokenCredential) azblob.Options {
		return azblob.Options{ContainerURL: containerURL, Credential: cred, TLSConfig: a.tls}
	}

	logs := newLogSink("")
	cred := &fakeEntra{ttl: 2 * time.Second}
	reg := pool.NewRegistry[*azblob.Conn]()
	t.Cleanup(func() { _ = reg.Close() })
	cfg := pool.DefaultConfig()
	cfg.MinSize, cfg.MaxSize = 0, 1
	cfg.Logger = slog.New(logs)
	require.NoError(t, azblob.Register(context.Background(), reg, "blob", opts(cred), cfg))

	data := []byte("read with an Entra token")
	require.NoError(t, reg.With(context.Background(), "blob", func(c *azblob.Conn) error {
		return c.Upload(context.Background(), "x", bytes.NewReader(data), nil)
	}))
	read := func() []byte {
		var got []byte
		require.NoError(t, reg.With(context.Background(), "blob", func(c *azblob.Conn) error {
			rc, err := c.Read(context.Background(), "x")
			if err != nil {
				return err
			}
			defer rc.Close()
			got, err = io.ReadAll(rc)
			return err
		}))
		return got
	}
	assert.Equal(t, data, read())
	require.NotEmpty(t, cred.issued())
	cred.mu.Lock()
	for _, s := range cred.scopes {
		assert.Equal(t, []string{"https://storage.azure.com/.default"}, s)
	}
	cred.mu.Unlock()

	// The same pooled connection, once its first token has expired.
	// Not a wait for a goroutine: the token's lifetime, on the server's
	// clock, which checks it to the second.
	cred.mu.Lock()
	firstExpires := cred.expires[0]
	cred.mu.Unlock()
	time.Sleep(time.Until(firstExpires.Add(time.Second)))
	assert.Equal(t, data, read())
	assert.Equal(t, int64(1), reg.Stats()["blob"].Created, "the read after expiry used a new connection")
	assert.Greater(t, len(cred.issued()), 1, "no new token was asked for")

	// Azurite checks the tokens: an expired one is refused.
	_, err = dialWith(t, opts(&fakeEntra{ttl: -time.Hour}))
	require.ErrorIs(t, err, azblob.ErrAuth)
	var e *azblob.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, 403, e.StatusCode)
	assert.Equal(t, "AuthenticationFailed", e.Code)

	// A credential that fails: ErrAuth and its own error.
	denied := errors.New("managed identity endpoint said no")
	_, err = dialWith(t, opts(&fakeEntra{fail: denied}))
	require.ErrorIs(t, err, azblob.ErrAuth)
	require.ErrorIs(t, err, denied)
	assert.Contains(t, err.Error(), "credential: managed identity endpoint said no")

	// A credential that hangs: the caller's context ends the dial.
	hang := hangingCredential{}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = dialWithContext(t, ctx, opts(hang))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.NotErrorIs(t, err, azblob.ErrAuth)
	assert.Less(t, time.Since(start), 5*time.Second)

	// No token anywhere a user can see.
	seen := err.Error() + fmt.Sprintf("%+v", reg.Stats()) + logs.text()
	for _, tok := range cred.issued() {
		assert.NotContains(t, seen, tok)
	}
}

// hangingCredential blocks until its context ends.
type hangingCredential struct{}

func (hangingCredential) GetToken(ctx context.Context, _ policy.TokenRequestOptions) (azcore.AccessToken, error) {
	<-ctx.Done()
	return azcore.AccessToken{}, ctx.Err()
}

func dialWith(t *testing.T, opts azblob.Options) (*azblob.Conn, error) {
	t.Helper()
	return dialWithContext(t, context.Background(), opts)
}

func dialWithContext(t *testing.T, ctx context.Context, opts azblob.Options) (*azblob.Conn, error) {
	t.Helper()
	dial, err := azblob.Factory(opts)
	require.NoError(t, err)
	c, err := dial(ctx)
	if c != nil {
		t.Cleanup(func() { _ = c.Close() })
	}
	return c, err
}

// Credential's options are checked: it needs an https ContainerURL
// without a SAS, and no other credential beside it.
func TestCredentialOptionsValidated(t *testing.T) {
	cred := &fakeEntra{ttl: time.Hour}
	cases := []struct {
		opts azblob.Options
		want string
	}{
		{azblob.Options{Credential: cred}, "Credential needs ContainerURL"},
		{azblob.Options{Credential: cred, ContainerURL: "http://h/c"}, "https ContainerURL"},
		{azblob.Options{Credential: cred, ContainerURL: "https://h/c?sv=1&sig=abc"}, "must not carry a SAS"},
		{azblob.Options{Credential: cred, ContainerURL: "https://h/c", AccountName: "a", AccountKey: devKey}, "not both"},
		{azblob.Options{Credential: cred, ContainerURL: "https://h/c", SASToken: "sig=abc"}, "not both"},
		{azblob.Options{Credential: cred, ConnectionString: "AccountName=a;AccountKey=" + devKey, Container: "c"}, "not both"},
		{azblob.Options{Credential: cred, ContainerURL: "https://h/c", Container: "c"}, "Container is for ConnectionString"},
	}
	for _, tc := range cases {
		_, err := azblob.Factory(tc.opts)
		require.Error(t, err, "%+v", tc.opts)
		assert.Contains(t, err.Error(), tc.want)
		assert.NotContains(t, err.Error(), devKey)
	}
	assert.Empty(t, cred.issued(), "validation asked for a token")
}
