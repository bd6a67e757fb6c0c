package main

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recordingCredential stands in for azidentity's: it records the scopes
// it is asked for, and answers with a token or an error.
type recordingCredential struct {
	fail error

	mu     sync.Mutex
	scopes [][]string
}

func (c *recordingCredential) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scopes = append(c.scopes, o.Scopes)
	if c.fail != nil {
		return azcore.AccessToken{}, c.fail
	}
	return azcore.AccessToken{Token: "entra-token", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func (c *recordingCredential) asked() [][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.scopes
}

// useCredential makes the sources with auth "entra" use cred.
func useCredential(t *testing.T, cred azcore.TokenCredential) {
	old := newCredential
	newCredential = func() (azcore.TokenCredential, error) { return cred, nil }
	t.Cleanup(func() { newCredential = old })
}

// auth "entra": a PostgreSQL source's password is an access token for
// Azure Database for PostgreSQL's scope, asked for by each new connection;
// a Blob source reaches container URL of its endpoint with the
// credential; a failing credential's error says what failed; other auth
// values, and create_container with entra, are refused.
func TestEntraAuthOptions(t *testing.T) {
	cred := &recordingCredential{}
	useCredential(t, cred)

	opts, err := SourceConfig{ID: "pg", DSN: "postgres://app@h/db", Auth: "entra"}.postgresOptions()
	require.NoError(t, err)
	require.NotNil(t, opts.Password)
	pw, err := opts.Password(context.Background())
	require.NoError(t, err)
	assert.Equal(t, "entra-token", pw)
	assert.Equal(t, [][]string{{"https://ossrdbms-aad.database.windows.net/.default"}}, cred.asked())

	opts, err = SourceConfig{ID: "pg", DSN: "postgres://app:pw@h/db"}.postgresOptions()
	require.NoError(t, err)
	assert.Nil(t, opts.Password, "without auth entra the DSN's password is used")

	bopts, err := SourceConfig{ID: "b", Kind: kindBlob, DSN: "https://acct.blob.core.windows.net/", Container: "raw", Auth: "entra"}.blobOptions("https://acct.blob.core.windows.net/")
	require.NoError(t, err)
	assert.Equal(t, "https://acct.blob.core.windows.net/raw", bopts.ContainerURL)
	assert.Same(t, cred, bopts.Credential)
	assert.Empty(t, bopts.ConnectionString)

	failing := &recordingCredential{fail: errors.New("no managed identity here")}
	useCredential(t, failing)
	opts, err = SourceConfig{ID: "pg", DSN: "postgres://app@h/db", Auth: "entra"}.postgresOptions()
	require.NoError(t, err)
	_, err = opts.Password(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "entra token: no managed identity here")

	for _, tc := range []struct {
		src  SourceConfig
		want string
	}{
		{SourceConfig{ID: "pg", DSN: "x", Auth: "kerberos"}, `auth "kerberos"`},
		{SourceConfig{ID: "b", Kind: kindBlob, DSN: "https://a", Container: "c", CreateContainer: true, Auth: "entra"}, "create_container"},
	} {
		err := tc.src.checkKind()
		require.Error(t, err)
		assert.Contains(t, err.Error(), tc.want)
	}
}

// A PostgreSQL source with auth "entra" serves requests, each new
// connection asking the credential for a token. (The test server trusts
// its clients, so the token is not checked here; postgres's own tests
// check a rotating password against a server that does.)
func TestEntraPostgresSourceServes(t *testing.T) {
	cred := &recordingCredential{}
	useCredential(t, cred)
	svc, ts := pgService(t, `{"sources": [{"id": "a", "dsn": "${PG_DSN}", "auth": "entra", "min_size": 1, "max_size": 2}]}`)
	var got doubleResponse
	require.Equal(t, http.StatusOK, getJSON(t, ts.URL+"/sources/a/double?n=21", &got))
	assert.EqualValues(t, 42, got.Doubled)
	created := svc.reg.Stats()["a"].Created
	require.Positive(t, created)
	assert.GreaterOrEqual(t, int64(len(cred.asked())), created)
}
