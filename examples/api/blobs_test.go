package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool/azblob"
)

// seed uploads blobs to the service's Blob source "files" through its own
// pool, under a prefix of the test's own.
func seed(t *testing.T, svc *Service, blobs map[string][]byte) {
	t.Helper()
	require.NoError(t, azblob.With(context.Background(), svc.reg, "files", func(c *azblob.Conn) error {
		for name, b := range blobs {
			if err := c.Upload(context.Background(), name, bytes.NewReader(b), nil); err != nil {
				return err
			}
		}
		return nil
	}))
}

// One registry serves both kinds: blobs are listed and read over HTTP
// from the Blob source, queries run on the PostgreSQL ones, and each
// endpoint refuses the other kind's source with a JSON 400.
func TestBlobsThroughTheService(t *testing.T) {
	needAzurite(t)
	svc, ts := startService(t)
	prefix := fmt.Sprintf("%s-%d/", t.Name(), os.Getpid())
	big := make([]byte, 3<<20)
	_, err := rand.Read(big)
	require.NoError(t, err)
	blobs := map[string][]byte{prefix + "a.txt": []byte("alpha"), prefix + "b/c.bin": big, prefix + "d": {}}
	seed(t, svc, blobs)

	var page blobPage
	require.Equal(t, http.StatusOK, getJSON(t, ts.URL+"/sources/files/blobs?prefix="+prefix, &page))
	require.Len(t, page.Blobs, 3)
	assert.Equal(t, prefix+"a.txt", page.Blobs[0].Name)
	assert.EqualValues(t, 5, page.Blobs[0].Size)
	assert.EqualValues(t, len(big), page.Blobs[1].Size)
	assert.Empty(t, page.Next)

	// Paged: two pages of 2 and 1.
	require.Equal(t, http.StatusOK, getJSON(t, ts.URL+"/sources/files/blobs?limit=2&prefix="+prefix, &page))
	require.Len(t, page.Blobs, 2)
	require.NotEmpty(t, page.Next)
	require.Equal(t, http.StatusOK, getJSON(t, ts.URL+"/sources/files/blobs?limit=2&prefix="+prefix+"&marker="+page.Next, &page))
	require.Len(t, page.Blobs, 1)
	assert.Equal(t, prefix+"d", page.Blobs[0].Name)

	for name, want := range blobs {
		resp, err := http.Get(ts.URL + "/sources/files/blobs/" + name)
		require.NoError(t, err)
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, name)
		require.True(t, bytes.Equal(want, got), "%s: %d bytes back, want %d", name, len(got), len(want))
	}

	var errBody map[string]string
	for _, tc := range []struct {
		path string
		code int
		says string
	}{
		{"/sources/files/blobs/" + prefix + "missing", 404, "no such blob"},
		{"/sources/files/double?n=1", 400, `"files" is a azblob source, not postgres`},
		{"/sources/sales/blobs", 400, `"sales" is a postgres source, not azblob`},
		{"/sources/sales/blobs/x", 400, "not azblob"},
		{"/sources/nope/blobs", 404, `unknown source "nope"`},
		{"/sources/files/blobs?limit=0", 400, "limit must be"},
		{"/sources/files/blobs?limit=99999999999", 400, "limit must be"},
		{"/sources/files/blobs?limit=x", 400, "limit must be"},
		{"/sources/files/blobs?prefix=a&prefix=b", 400, "at most once"},
		{"/sources/files/blobs?debug=1", 400, `unknown parameter "debug"`},
		{"/sources/files/blobs/x?y=1", 400, "takes no parameters"},
	} {
		assert.Equal(t, tc.code, getJSON(t, ts.URL+tc.path, &errBody), tc.path)
		assert.Contains(t, errBody["error"], tc.says, tc.path)
		for _, internal := range []string{"azblob:", "RESPONSE", "BlobNotFound", "pool:", "https://"} {
			assert.NotContains(t, errBody["error"], internal, "%s leaks internals", tc.path)
		}
	}

	// Every loan came back, and the registry holds both kinds.
	var stats map[string]sourceStats
	require.Equal(t, http.StatusOK, getJSON(t, ts.URL+"/stats", &stats))
	assert.Zero(t, stats["files"].InUse)
	assert.Equal(t, 8, stats["files"].MaxSize)
	assert.Contains(t, stats, "sales")
}

// A Blob source is checked like a PostgreSQL one: settings of the wrong
// kind, a missing container or an unset variable refuse the configuration,
// with no key in the error.
func TestBlobSourceConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "c.json")
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	_, err := LoadConfig(write(`{"sources": [{"id": "f", "kind": "azblob", "dsn": "AccountName=a;AccountKey=a2V5"}]}`))
	assert.ErrorContains(t, err, "needs a container")
	_, err = LoadConfig(write(`{"sources": [{"id": "f", "kind": "s3", "dsn": "x"}]}`))
	assert.ErrorContains(t, err, `kind "s3"`)
	_, err = LoadConfig(write(`{"sources": [{"id": "p", "dsn": "postgres://h/x", "container": "c"}]}`))
	assert.ErrorContains(t, err, "for kind azblob")
	t.Setenv("POOLTEST_UNSET_CA", "")
	_, err = LoadConfig(write(`{"sources": [{"id": "f", "kind": "azblob", "dsn": "AccountName=a;AccountKey=a2V5", "container": "c", "ca_cert": "${POOLTEST_UNSET_CA}"}]}`))
	assert.ErrorContains(t, err, "POOLTEST_UNSET_CA is not set")

	if os.Getenv("AZURITE_CONNECTION_STRING") == "" {
		t.Skip("AZURITE_CONNECTION_STRING is not set; set it for an Azurite over HTTPS to run this test (.ci/services.sh starts one, and also installs Debian packages and starts PostgreSQL and PgBouncer)")
	}
	c, err := LoadConfig(write(`{"sources": [{"id": "f", "kind": "azblob", "dsn": "${AZURITE_CONNECTION_STRING}", "container": "no-such-container", "ca_cert": "${AZURITE_CA_CERT}"}]}`))
	require.NoError(t, err)
	_, err = NewService(context.Background(), c)
	require.ErrorIs(t, err, azblob.ErrContainerNotFound)
	assert.Contains(t, err.Error(), `"f"`)
	for _, kv := range strings.Split(os.Getenv("AZURITE_CONNECTION_STRING"), ";") {
		if key, ok := strings.CutPrefix(kv, "AccountKey="); ok {
			assert.NotContains(t, err.Error(), key)
		}
	}
}
