// Package azblob pools connections to one Azure Blob Storage container for
// github.com/deepanalyze/pool, on the Azure SDK for Go
// (github.com/Azure/azure-sdk-for-go/sdk/storage/azblob).
//
// # What one pooled connection is
//
// The SDK's client is safe for concurrent use and already keeps HTTP
// connections alive inside its transport, so pooling clients would add
// nothing by itself. What the transport does not give is a bound: under a
// burst it opens as many connections as there are requests in flight, it
// queues nobody fairly, it has no health check and no per-source numbers.
//
// So a pooled *Conn here is one keep-alive HTTPS connection, bound to one
// container: each Conn owns a container client whose transport allows one
// connection to the host (MaxConnsPerHost 1, HTTP/1.1). A pool of MaxSize n
// therefore holds at most n TCP connections to the service and runs at most
// n requests at once, and everything the core gives comes with it: FIFO
// waiting under overload, AcquireTimeout, a dial (the first request, which
// opens the TCP and TLS connection and checks the credential and the
// container) bounded by DialTimeout with backoff while the service is down,
// a Ping that costs one small request (Get Container Properties, or with a
// SAS token a listing of at most one blob), Stats per
// source, leak detection, and the same With path as PostgreSQL.
//
// # Credentials
//
// Options takes a connection string (with an account key or a shared
// access signature), a container URL with a shared key, a container URL
// with a SAS token, or a container URL with a Microsoft Entra ID
// credential (Options.Credential, an azcore.TokenCredential):
//
//	cred, err := azidentity.NewDefaultAzureCredential(nil) // managed identity, workload identity, az login...
//	if err != nil { ... }
//	cfg := pool.DefaultConfig() // timeouts, pings, lifetimes; a zero Config is invalid
//	cfg.MaxSize = 8
//	err = azblob.Register(ctx, reg, "raw", azblob.Options{
//		ContainerURL: "https://account.blob.core.windows.net/raw",
//		Credential:   cred,
//	}, cfg)
//
// The identity needs a data role on the container, such as Storage Blob
// Data Reader (Ping reads the container's properties). A key, a SAS token
// or an access token never appears in an error this package returns or in
// what the pool logs: the text of every error is scrubbed of them, and of
// any sig= parameter, before it leaves the package. Stats hold numbers
// only.
//
// A service whose certificate comes from a private CA (Azurite's, a
// proxy's) is trusted through Options.TLSConfig; TrustCA builds one from a
// PEM file, on top of the system's roots.
//
// # Errors
//
// Every error from an operation is an *Error, which names the operation,
// the blob and the status. Handlers branch with errors.Is on
// ErrBlobNotFound, ErrContainerNotFound, ErrAuth and ErrThrottled. A 429 or
// 503 is retried by the SDK's retry policy first, which honours the
// service's Retry-After; ErrThrottled is what is left when the retries run
// out. A dial that is still throttled also matches pool.ErrCapacity: the
// pool keeps its callers waiting and opens no more connections than the
// account accepts, probing for more one at a time.
//
// A connection the service closed while it sat idle is replaced under the
// next request, which does not fail (TestIdleConnectionClosedByTheService-
// ServesTheNextRequest); a request that fails on the network is retried by
// the SDK's policy, every operation here being safe to repeat (an upload
// replaces the blob with the same bytes).
//
// # Readers
//
// Open and OpenRange return the blob's body as an io.ReadCloser that holds
// the connection until it is closed: the connection goes back to the pool
// on Close, not before. A reader never closed is a leaked loan, which the
// core reports when Config.LeakThreshold is set. A body whose connection
// breaks mid-read resumes, up to 3 times, on a new connection from the
// offset it had reached, asking for the same version of the blob (If-Match
// on its ETag): if the blob was replaced meanwhile, the read fails with a
// 412 rather than splice two versions (TestReadResumesAfterACutConnection).
package azblob
