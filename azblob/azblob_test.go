package azblob_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/azblob"
)

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

func newRegistry(t testing.TB, a azurite, name string, cfg pool.Config) *pool.PooledRegistry[*azblob.Conn] {
	t.Helper()
	reg := pool.NewRegistry[*azblob.Conn]()
	t.Cleanup(func() { _ = reg.Close() })
	require.NoError(t, azblob.Register(context.Background(), reg, "blob", a.options(name), cfg, pool.WithTestConnect()))
	return reg
}

// Every operation round-trips blobs of 0 B, 1 KiB and 8 MiB, uploaded
// both from a seekable body (one request) and from a plain reader (in
// blocks).
func TestRoundTrip(t *testing.T) {
	a := needAzurite(t)
	name := a.newContainer(t)
	reg := newRegistry(t, a, name, pool.DefaultConfig())
	ctx := context.Background()

	for _, size := range []int{0, 1 << 10, 8 << 20} {
		for _, seekable := range []bool{true, false} {
			t.Run(fmt.Sprintf("%dB/seekable=%v", size, seekable), func(t *testing.T) {
				data := randomBytes(t, size)
				blobName := fmt.Sprintf("rt/%d-%v", size, seekable)
				var body io.Reader = bytes.NewReader(data)
				if !seekable {
					body = io.MultiReader(body) // hides Seek
				}
				require.NoError(t, azblob.With(ctx, reg, "blob", func(c *azblob.Conn) error {
					return c.Upload(ctx, blobName, body, &azblob.UploadOptions{ContentType: "application/x-test"})
				}))

				var props azblob.BlobInfo
				require.NoError(t, azblob.With(ctx, reg, "blob", func(c *azblob.Conn) (err error) {
					props, err = c.Properties(ctx, blobName)
					return err
				}))
				assert.Equal(t, int64(size), props.Size)
				assert.Equal(t, "application/x-test", props.ContentType)
				assert.NotEmpty(t, props.ETag)
				assert.WithinDuration(t, time.Now(), props.LastModified, time.Hour)

				rc, err := azblob.Open(ctx, reg, "blob", blobName)
				require.NoError(t, err)
				got, err := io.ReadAll(rc)
				require.NoError(t, err)
				require.NoError(t, rc.Close())
				require.True(t, bytes.Equal(data, got), "read back %d bytes, want %d", len(got), len(data))

				if size > 0 {
					off, n := int64(size/3), int64(size/4+1)
					rc, err := azblob.OpenRange(ctx, reg, "blob", blobName, off, n)
					require.NoError(t, err)
					got, err := io.ReadAll(rc)
					require.NoError(t, err)
					require.NoError(t, rc.Close())
					require.True(t, bytes.Equal(data[off:off+n], got), "range read back %d bytes", len(got))
				}
			})
		}
	}
	assert.Zero(t, reg.Stats()["blob"].InUse)
}

// Listing pages through a prefix, in name order, and leaves out what
// lies outside it.
func TestListPaged(t *testing.T) {
	a := needAzurite(t)
	name := a.newContainer(t)
	reg := newRegistry(t, a, name, pool.DefaultConfig())
	ctx := context.Background()
	var want []string
	require.NoError(t, azblob.With(ctx, reg, "blob", func(c *azblob.Conn) error {
		for i := range 7 {
			n := fmt.Sprintf("in/%02d", i)
			want = append(want, n)
			if err := c.Upload(ctx, n, strings.NewReader(n), nil); err != nil {
				return err
			}
		}
		return c.Upload(ctx, "out/x", strings.NewReader("x"), nil)
	}))

	var pages [][]string
	require.NoError(t, azblob.With(ctx, reg, "blob", func(c *azblob.Conn) error {
		marker := ""
		for {
			p, err := c.ListPage(ctx, "in/", marker, 3)
			if err != nil {
				return err
			}
			var names []string
			for _, b := range p.Blobs {
				names = append(names, b.Name)
				if b.Size != int64(len(b.Name)) {
					return fmt.Errorf("%s: size %d", b.Name, b.Size)
				}
			}
			pages = append(pages, names)
			if p.Next == "" {
				return nil
			}
			marker = p.Next
		}
	}))
	assert.Equal(t, [][]string{want[0:3], want[3:6], want[6:7]}, pages)

	var all []string
	require.NoError(t, azblob.With(ctx, reg, "blob", func(c *azblob.Conn) error {
		for b, err := range c.List(ctx, "in/") {
			if err != nil {
				return err
			}
			all = append(all, b.Name)
		}
		return nil
	}))
	assert.Equal(t, want, all)
}

// A missing blob and a missing container give their sentinels, from an
// operation and from the dial of a new connection.
func TestNotFoundErrors(t *testing.T) {
	a := needAzurite(t)
	name := a.newContainer(t)
	reg := newRegistry(t, a, name, pool.DefaultConfig())
	ctx := context.Background()

	_, err := azblob.Open(ctx, reg, "blob", "no/such/blob")
	require.ErrorIs(t, err, azblob.ErrBlobNotFound)
	var e *azblob.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, 404, e.StatusCode)
	assert.Equal(t, "read", e.Op)
	assert.Equal(t, "no/such/blob", e.Blob)
	assert.Contains(t, err.Error(), name+"/no/such/blob")
	var re *azcore.ResponseError
	require.ErrorAs(t, err, &re, "the SDK's error stays reachable")
	assert.Zero(t, reg.Stats()["blob"].InUse, "a failed Open holds no connection")

	err = azblob.With(ctx, reg, "blob", func(c *azblob.Conn) error {
		_, err := c.Properties(ctx, "no/such/blob")
		return err
	})
	require.ErrorIs(t, err, azblob.ErrBlobNotFound)

	other := pool.NewRegistry[*azblob.Conn]()
	defer other.Close()
	err = azblob.Register(ctx, other, "gone", a.options("no-such-container"), pool.DefaultConfig(), pool.WithTestConnect())
	require.ErrorIs(t, err, azblob.ErrContainerNotFound)
	assert.Contains(t, err.Error(), `"gone"`)
}

// Wrong credentials give ErrAuth, and no key, SAS token or signature shows
// in an error, in what the pool logs, or in Stats.
func TestAuthErrorsKeepSecrets(t *testing.T) {
	a := needAzurite(t)
	name := a.newContainer(t)
	ctx := context.Background()

	// A key of the right shape that is not the account's.
	wrongKey := strings.ToUpper(devKey[:20]) + devKey[20:]
	wrongConnStr := strings.Replace(a.connStr, devKey, wrongKey, 1)

	// A SAS made by the account, read-only, and the same SAS with its
	// signature tampered with.
	sasURL, err := a.admin(t, name).GetSASURL(sas.ContainerPermissions{Read: true, List: true}, time.Now().Add(time.Hour), nil)
	require.NoError(t, err)
	u, err := url.Parse(sasURL)
	require.NoError(t, err)
	token := u.RawQuery
	sig := u.Query().Get("sig")
	require.NotEmpty(t, sig)
	u.RawQuery = ""
	containerURL := u.String()
	q, _ := url.ParseQuery(token)
	q.Set("sig", "AAAA"+sig[4:])
	badToken := q.Encode()

	secrets := []string{devKey, wrongKey, token, sig, url.QueryEscape(sig), badToken, q.Get("sig"), url.QueryEscape(q.Get("sig"))}
	assertNoSecret := func(t *testing.T, text string) {
		t.Helper()
		for _, s := range secrets {
			require.NotContains(t, text, s)
		}
	}

	cases := []struct {
		name string
		opts azblob.Options
	}{
		{"wrong account key in connection string", azblob.Options{ConnectionString: wrongConnStr, Container: name}},
		{"wrong shared key", azblob.Options{ContainerURL: containerURL, AccountName: "devstoreaccount1", AccountKey: wrongKey}},
		{"tampered SAS token", azblob.Options{ContainerURL: containerURL, SASToken: badToken}},
		{"tampered SAS in the URL", azblob.Options{ContainerURL: containerURL + "?" + badToken}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.TLSConfig = a.tls
			logs := newLogSink("source down")
			cfg := pool.DefaultConfig()
			cfg.Logger = slog.New(logs)
			cfg.MinSize = 0
			reg := pool.NewRegistry[pool.Connector]()
			defer reg.Close()
			err := azblob.Register(ctx, reg, "bad", tc.opts, cfg, pool.WithTestConnect())
			require.ErrorIs(t, err, azblob.ErrAuth)
			assertNoSecret(t, err.Error())
			// Registered without the check, the dial fails on use, and is logged.
			require.NoError(t, azblob.Register(ctx, reg, "bad2", tc.opts, cfg))
			err = azblob.With(ctx, reg, "bad2", func(*azblob.Conn) error { return nil })
			require.ErrorIs(t, err, azblob.ErrAuth)
			assertNoSecret(t, err.Error())
			for e := err; e != nil; e = errors.Unwrap(e) {
				assertNoSecret(t, e.Error())
			}
			waitLogged(t, logs) // logged after the caller got its error
			assertNoSecret(t, logs.text())
			assertNoSecret(t, fmt.Sprintf("%+v", reg.Stats()))
		})
	}

	// The read-only SAS works for reading, and a write gives ErrAuth
	// without the token in the text.
	reg := pool.NewRegistry[*azblob.Conn]()
	defer reg.Close()
	require.NoError(t, azblob.Register(ctx, reg, "ro", azblob.Options{ContainerURL: containerURL, SASToken: token, TLSConfig: a.tls}, pool.DefaultConfig(), pool.WithTestConnect()))
	err = azblob.With(ctx, reg, "ro", func(c *azblob.Conn) error {
		for _, err := range c.List(ctx, "") {
			if err != nil {
				return err
			}
		}
		return c.Upload(ctx, "denied", strings.NewReader("x"), nil)
	})
	require.ErrorIs(t, err, azblob.ErrAuth)
	assertNoSecret(t, err.Error())
	var re *azcore.ResponseError
	require.ErrorAs(t, err, &re)
	assertNoSecret(t, re.Error())
}

// waitLogged waits until the pool has logged the failed dial.
func waitLogged(t *testing.T, logs *logSink) {
	t.Helper()
	select {
	case <-logs.found:
	case <-time.After(10 * time.Second):
		t.Fatalf("the failed dial was not logged; the log holds:\n%s", logs.text())
	}
}

// Options that cannot work are refused with an error that says why and
// holds no secret.
func TestOptionsValidated(t *testing.T) {
	const key = "c2VjcmV0LWtleS10aGF0LW11c3Qtbm90LWxlYWs="
	cases := []struct {
		opts azblob.Options
		want string
	}{
		{azblob.Options{}, "give ConnectionString or ContainerURL"},
		{azblob.Options{ConnectionString: "AccountName=a;AccountKey=" + key}, "needs Container"},
		{azblob.Options{ConnectionString: "AccountName=a;BlobEndpoint=https://h/a", Container: "c"}, "neither AccountKey nor SharedAccessSignature"},
		{azblob.Options{ConnectionString: "AccountName=a;AccountKey=" + key, Container: "c", ContainerURL: "https://h/c"}, "not both"},
		{azblob.Options{ContainerURL: "https://h/c"}, "needs a shared key or a SAS token"},
		{azblob.Options{ContainerURL: "https://h/c", AccountKey: key}, "needs both AccountName and AccountKey"},
		{azblob.Options{ContainerURL: "https://h/c", AccountName: "a", AccountKey: key, SASToken: "sig=" + key}, "not both"},
		{azblob.Options{ContainerURL: "ftp://h/c", SASToken: "sig=x"}, "http(s) URL"},
		{azblob.Options{ContainerURL: "https://h/c", AccountName: "a", AccountKey: "not base64!" + key}, "azblob:"},
	}
	for _, tc := range cases {
		_, err := azblob.Factory(tc.opts)
		require.Error(t, err, "%+v", tc.opts)
		assert.Contains(t, err.Error(), tc.want)
		assert.NotContains(t, err.Error(), key)
	}
}

// TrustCA trusts the certificate in its file, and only with it: a TLS
// service with a private certificate is refused by the system's roots and
// accepted with TrustCA's. A missing file or one with no certificate is an
// error naming the file.
func TestTrustCA(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600))

	get := func(cfg *tls.Config) error {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		resp, err := c.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	require.Error(t, get(nil), "the system's roots must not trust the test certificate")
	cfg, err := azblob.TrustCA(caFile)
	require.NoError(t, err)
	assert.Equal(t, uint16(tls.VersionTLS12), cfg.MinVersion)
	require.NoError(t, get(cfg))

	missing := filepath.Join(dir, "missing.pem")
	_, err = azblob.TrustCA(missing)
	require.ErrorContains(t, err, missing)
	empty := filepath.Join(dir, "empty.pem")
	require.NoError(t, os.WriteFile(empty, []byte("not a certificate\n"), 0o600))
	_, err = azblob.TrustCA(empty)
	require.ErrorContains(t, err, "no PEM certificate in "+empty)
}

// A 503 is retried by the SDK after the Retry-After the service asked
// for, and what is left after the retries is ErrThrottled. A fake service
// over TLS stands in for Azure, which Azurite cannot make throttle.
func TestThrottledHonoursRetryAfter(t *testing.T) {
	var mu sync.Mutex
	var throttled []time.Time
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("restype") == "container" { // the dial's Get Container Properties
			w.WriteHeader(http.StatusOK)
			return
		}
		mu.Lock()
		throttled = append(throttled, time.Now())
		mu.Unlock()
		w.Header().Set("x-ms-error-code", "ServerBusy")
		w.Header().Set("retry-after-ms", "300")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	const token = "sv=2024-01-01&sp=r&sig=c2VjcmV0LXNpZ25hdHVyZQ%3D%3D"
	dial, err := azblob.Factory(azblob.Options{
		ContainerURL: srv.URL + "/acct/box", SASToken: token,
		TLSConfig: srv.Client().Transport.(*http.Transport).TLSClientConfig,
		Retry:     policy.RetryOptions{MaxRetries: 2, RetryDelay: time.Millisecond},
	})
	require.NoError(t, err)
	p, err := pool.New(dial, pool.DefaultConfig())
	require.NoError(t, err)
	defer p.Close()

	err = p.With(context.Background(), func(c *azblob.Conn) error {
		_, err := c.Properties(context.Background(), "hot")
		return err
	})
	require.ErrorIs(t, err, azblob.ErrThrottled)
	var e *azblob.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, 503, e.StatusCode)
	assert.Equal(t, "ServerBusy", e.Code)
	assert.NotContains(t, err.Error(), "c2VjcmV0LXNpZ25hdHVyZQ")

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, throttled, 3, "one try and two retries")
	for i := 1; i < len(throttled); i++ {
		gap := throttled[i].Sub(throttled[i-1])
		assert.GreaterOrEqual(t, gap, 300*time.Millisecond, "retry %d came %v after the previous try, before Retry-After", i, gap)
	}
}

// A dial that the account throttles (503 ServerBusy, or 429) matches
// pool.ErrCapacity: the pool does not mark the container down, its caller
// waits, and is served once the account takes the connection.
func TestThrottledDialIsCapacity(t *testing.T) {
	var busy atomic.Int64
	busy.Store(3) // dials answered 503 before one is accepted
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("restype") == "container" && busy.Add(-1) >= 0 {
			w.Header().Set("x-ms-error-code", "ServerBusy")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	dial, err := azblob.Factory(azblob.Options{
		ContainerURL: srv.URL + "/acct/box", SASToken: "sv=2024-01-01&sp=r&sig=c2VjcmV0",
		TLSConfig: srv.Client().Transport.(*http.Transport).TLSClientConfig,
		Retry:     policy.RetryOptions{MaxRetries: 1, RetryDelay: time.Millisecond, MaxRetryDelay: time.Millisecond},
	})
	require.NoError(t, err)

	_, err = dial(context.Background())
	require.ErrorIs(t, err, pool.ErrCapacity)
	require.ErrorIs(t, err, azblob.ErrThrottled)

	busy.Store(3)
	cfg := pool.DefaultConfig()
	cfg.MinSize = 0
	cfg.AcquireTimeout = 10 * time.Second
	p, err := pool.New(dial, cfg)
	require.NoError(t, err)
	defer p.Close()
	require.NoError(t, p.With(context.Background(), func(*azblob.Conn) error { return nil }))
	s := p.Stats()
	assert.Positive(t, s.Refused)
	assert.False(t, s.Down)
	assert.Zero(t, s.FailedFast)
}

// A handler given a source of another kind gets an error naming it, and
// a registry of another connection type is refused.
func TestWrongKindOfSource(t *testing.T) {
	a := needAzurite(t)
	name := a.newContainer(t)
	ctx := context.Background()
	reg := pool.NewRegistry[pool.Connector]()
	defer reg.Close()
	require.NoError(t, reg.Register(ctx, "other", func(context.Context) (pool.Connector, error) { return fakeConn{}, nil }, pool.DefaultConfig()))
	require.NoError(t, azblob.Register(ctx, reg, "blob", a.options(name), pool.DefaultConfig()))

	called := false
	err := azblob.With(ctx, reg, "other", func(*azblob.Conn) error { called = true; return nil })
	require.ErrorContains(t, err, `"other" is not a Blob source`)
	assert.False(t, called)
	_, err = azblob.Open(ctx, reg, "other", "x")
	require.ErrorContains(t, err, "is not a Blob source")
	assert.Zero(t, reg.Stats()["other"].InUse)
	require.NoError(t, azblob.With(ctx, reg, "blob", func(c *azblob.Conn) error { return c.Ping(ctx) }))

	typed := pool.NewRegistry[fakeConn]()
	err = azblob.Register(ctx, typed, "blob", a.options(name), pool.DefaultConfig())
	require.ErrorContains(t, err, "cannot hold Blob connections")
}

type fakeConn struct{}

func (fakeConn) Ping(context.Context) error { return nil }
func (fakeConn) Close() error               { return nil }

// A request that never reaches the service fails with the transport's
// error, whose URL would carry a SAS token: the token is not in the text,
// in the *url.Error a handler can reach, or in the pool's log.
func TestUnreachableKeepsSecrets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now
	const sig = "dW5yZWFjaGFibGUtc2lnbmF0dXJl"
	logs := newLogSink("source down")
	cfg := pool.DefaultConfig()
	cfg.MinSize = 0
	cfg.Logger = slog.New(logs)
	reg := pool.NewRegistry[*azblob.Conn]()
	defer reg.Close()
	opts := azblob.Options{
		ContainerURL: "https://" + addr + "/acct/box", SASToken: "?sv=2024-01-01&sp=rl&sig=" + sig,
		Retry: policy.RetryOptions{MaxRetries: 1, RetryDelay: time.Millisecond},
	}
	require.NoError(t, azblob.Register(context.Background(), reg, "down", opts, cfg))
	err = azblob.With(context.Background(), reg, "down", func(*azblob.Conn) error { return nil })
	require.ErrorIs(t, err, pool.ErrDial)
	var ue *url.Error
	require.ErrorAs(t, err, &ue, "the transport's error stays reachable")
	assert.Contains(t, err.Error(), addr)
	for e := error(ue); e != nil; e = errors.Unwrap(e) {
		assert.NotContains(t, e.Error(), sig)
	}
	assert.NotContains(t, err.Error(), sig)
	waitLogged(t, logs) // logged after the caller got its error
	assert.NotContains(t, logs.text(), sig)
	assert.Contains(t, logs.text(), addr, "the failed dial is logged")
}

// CreateContainer creates a container once and accepts one that exists.
func TestCreateContainer(t *testing.T) {
	a := needAzurite(t)
	name := fmt.Sprintf("created-%d", time.Now().UnixNano())
	t.Cleanup(func() { _, _ = a.admin(t, name).Delete(context.Background(), nil) })
	opts := a.options(name)
	_, err := azblob.Factory(opts)
	require.NoError(t, err)
	reg := pool.NewRegistry[*azblob.Conn]()
	defer reg.Close()
	require.ErrorIs(t, azblob.Register(context.Background(), reg, "x", opts, pool.DefaultConfig(), pool.WithTestConnect()), azblob.ErrContainerNotFound)
	require.NoError(t, azblob.CreateContainer(context.Background(), opts))
	require.NoError(t, azblob.CreateContainer(context.Background(), opts), "a second call finds it there")
	require.NoError(t, azblob.Register(context.Background(), reg, "y", opts, pool.DefaultConfig(), pool.WithTestConnect()))
	require.ErrorIs(t, azblob.CreateContainer(context.Background(), azblob.Options{ConnectionString: strings.Replace(a.connStr, devKey, "AAAA"+devKey[4:], 1), Container: name, TLSConfig: a.tls}), azblob.ErrAuth)
}
