package azblob_test

import (
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/azblob"
)

// Two containers of one account, with one credential, on a budget of one
// connection: each request reads its own container, and every one of
// them runs over the one HTTPS connection dialled first, which moves
// between the two sources instead of being closed and dialled again.
func TestContainersOfOneAccountShareAKeepAliveConnection(t *testing.T) {
	az := needAzurite(t)
	ctx := context.Background()
	var dials atomic.Int64
	dialer := &net.Dialer{}
	countingDial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return dialer.DialContext(ctx, network, addr)
	}
	budget, err := pool.NewBudget(1)
	require.NoError(t, err)
	reg := pool.NewRegistry[pool.Connector]()
	t.Cleanup(func() { _ = reg.Close() })
	names := []string{az.newContainer(t), az.newContainer(t)}
	for _, name := range names {
		_, err := az.admin(t, name).NewBlockBlobClient("who").UploadBuffer(ctx, []byte(name), nil)
		require.NoError(t, err)
		opts := az.options(name)
		opts.DialContext = countingDial
		cfg := pool.DefaultConfig()
		cfg.MinSize, cfg.MaxSize, cfg.Budget = 0, 1, budget
		require.NoError(t, azblob.Register(ctx, reg, name, opts, cfg))
	}
	for range 3 {
		for _, name := range names {
			body, err := azblob.Open(ctx, reg, name, "who")
			require.NoError(t, err)
			got, err := io.ReadAll(body)
			require.NoError(t, err)
			require.NoError(t, body.Close())
			assert.Equal(t, name, string(got), "a request read another container")
		}
	}
	assert.EqualValues(t, 1, dials.Load(), "TCP connections dialled")
	for _, name := range names {
		s := reg.Stats()[name]
		assert.Positive(t, s.MovedIn, name)
		assert.Zero(t, s.BindErrors, name)
	}
	assert.Positive(t, budget.Stats().Shared)

	// With NoShare, the second source dials its own.
	budget2, err := pool.NewBudget(1)
	require.NoError(t, err)
	reg2 := pool.NewRegistry[*azblob.Conn]()
	t.Cleanup(func() { _ = reg2.Close() })
	dials.Store(0)
	for _, name := range names {
		opts := az.options(name)
		opts.DialContext, opts.NoShare = countingDial, true
		cfg := pool.DefaultConfig()
		cfg.MinSize, cfg.MaxSize, cfg.Budget = 0, 1, budget2
		require.NoError(t, azblob.Register(ctx, reg2, name, opts, cfg))
	}
	for _, name := range names {
		require.NoError(t, azblob.With(ctx, reg2, name, func(c *azblob.Conn) error {
			_, err := c.Properties(ctx, "who")
			return err
		}))
	}
	assert.EqualValues(t, 2, dials.Load(), "with NoShare, each source dials")
	assert.Zero(t, reg2.Stats()[names[1]].MovedIn)
}

// Which sources share: one endpoint and one credential, never a SAS
// token, never a credential whose identity cannot be told; the group's
// name never holds the key.
func TestWhichBlobSourcesShare(t *testing.T) {
	const key = "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5"
	cs := func(account, key string) string {
		return "DefaultEndpointsProtocol=https;AccountName=" + account + ";AccountKey=" + key +
			";BlobEndpoint=https://127.0.0.1:1/" + account + ";"
	}
	group := func(opts azblob.Options) string {
		t.Helper()
		_, share, err := azblob.SharedFactory(opts)
		require.NoError(t, err)
		if share.Group != "" {
			assert.NotNil(t, share.Bind)
		}
		return share.Group
	}
	a := group(azblob.Options{ConnectionString: cs("acct", key), Container: "a"})
	b := group(azblob.Options{ConnectionString: cs("acct", key), Container: "b"})
	require.NotEmpty(t, a)
	assert.Equal(t, a, b, "containers of one account and key")
	assert.NotContains(t, a, key)
	other := strings.Replace(key, "a2V5", "b3Ro", 1)
	assert.NotEqual(t, a, group(azblob.Options{ConnectionString: cs("acct", other), Container: "a"}), "another key")
	assert.NotEqual(t, a, group(azblob.Options{ConnectionString: cs("acct2", key), Container: "a"}), "another account")
	assert.NotEqual(t, a, group(azblob.Options{ConnectionString: cs("acct", key), Container: "a", DialTimeout: 7}), "another dial timeout")
	assert.Empty(t, group(azblob.Options{ContainerURL: "https://127.0.0.1:1/acct/a", SASToken: "sv=2020&sig=abc"}), "a SAS token shares nothing")

	cred := &staticCredential{}
	e1 := group(azblob.Options{ContainerURL: "https://127.0.0.1:1/acct/a", Credential: cred})
	e2 := group(azblob.Options{ContainerURL: "https://127.0.0.1:1/acct/b", Credential: cred})
	require.NotEmpty(t, e1)
	assert.Equal(t, e1, e2, "one credential, two containers")
	assert.NotEqual(t, e1, group(azblob.Options{ContainerURL: "https://127.0.0.1:1/acct/a", Credential: &staticCredential{}}), "another credential")
	assert.Empty(t, group(azblob.Options{ContainerURL: "https://127.0.0.1:1/acct/a", Credential: valueCredential{}}), "a credential that is not a pointer")
}

type staticCredential struct{ _ int }

func (*staticCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "t"}, nil
}

type valueCredential struct{}

func (valueCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "t"}, nil
}
