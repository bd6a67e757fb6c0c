package azblob_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/azblob"
)

// A Blob container registered by ID: one pooled *azblob.Conn is one
// keep-alive HTTPS connection to the account. It needs an account:
// TestExampleRunsAgainstAzurite runs it against Azurite.
func Example() {
	ctx := context.Background()
	reg := pool.NewRegistry[pool.Connector]()
	defer reg.Shutdown(ctx)

	opts := azblob.Options{ConnectionString: os.Getenv("AZURITE_CONNECTION_STRING"), Container: "example"}
	if ca := os.Getenv("AZURITE_CA_CERT"); ca != "" { // a private authority, such as Azurite's
		tlsCfg, err := azblob.TrustCA(ca)
		if err != nil {
			log.Fatal(err)
		}
		opts.TLSConfig = tlsCfg
	}
	if err := azblob.CreateContainer(ctx, opts); err != nil { // a fresh account has none
		log.Fatal(err)
	}
	cfg := pool.DefaultConfig()
	cfg.MaxSize = 8 // at most 8 sockets to the account
	if err := azblob.Register(ctx, reg, "blob-raw", opts, cfg, pool.WithTestConnect()); err != nil {
		log.Fatal(err) // azblob.ErrAuth, ErrContainerNotFound...; never the key or SAS
	}

	err := azblob.With(ctx, reg, "blob-raw", func(c *azblob.Conn) error {
		return c.Upload(ctx, "2026/orders.csv", strings.NewReader("id,total\n1,42\n"), nil)
	})
	if err != nil {
		log.Fatal(err)
	}
	body, err := azblob.Open(ctx, reg, "blob-raw", "2026/orders.csv") // Close returns its connection
	if err != nil {
		log.Fatal(err)
	}
	defer body.Close()
	b, err := io.ReadAll(body)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(b))
}

// Options are checked before any connection, and the error never shows
// the key.
func ExampleRegister_invalidOptions() {
	reg := pool.NewRegistry[pool.Connector]()
	defer reg.Close()
	err := azblob.Register(context.Background(), reg, "blob-raw", azblob.Options{
		ConnectionString: "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net",
	}, pool.DefaultConfig())
	fmt.Println(err)
	// Output:
	// azblob: source "blob-raw": ConnectionString needs Container
}

// Example has no Output comment, since go test would run it without an
// account; this runs it against Azurite and checks what it printed.
func TestExampleRunsAgainstAzurite(t *testing.T) {
	a := needAzurite(t)
	c := a.admin(t, "example") // the container Example creates
	t.Cleanup(func() { _, _ = c.Delete(context.Background(), nil) })
	r, w, err := os.Pipe()
	require.NoError(t, err)
	saved := os.Stdout
	os.Stdout = w
	defer func() { os.Stdout = saved }()
	out := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		out <- string(b)
	}()
	Example()
	os.Stdout = saved
	require.NoError(t, w.Close())
	assert.Equal(t, "id,total\n1,42\n", <-out)
}
