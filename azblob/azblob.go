package azblob

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/deepanalyze/pool"
)

// Options says how to reach one container. Give exactly one of:
//   - ConnectionString, with Container;
//   - ContainerURL with AccountName and AccountKey (shared key);
//   - ContainerURL with SASToken, or a ContainerURL whose query already
//     holds the SAS token.
type Options struct {
	// ConnectionString is an Azure Storage connection string, with
	// AccountName and AccountKey or SharedAccessSignature, and a
	// BlobEndpoint or an EndpointSuffix.
	ConnectionString string
	// Container is the container's name, used with ConnectionString.
	Container string

	// ContainerURL is the container's URL, such as
	// https://account.blob.core.windows.net/container.
	ContainerURL string
	// AccountName and AccountKey are a shared key for ContainerURL.
	AccountName string
	AccountKey  string
	// SASToken is a shared access signature for ContainerURL, with or
	// without its leading '?'.
	SASToken string
	// Credential is a Microsoft Entra ID credential for ContainerURL, which
	// must then be https: azidentity.NewDefaultAzureCredential, a managed
	// identity, a workload identity... Each new connection asks it for a
	// token (scope https://storage.azure.com/.default), and asks again as
	// the token nears its expiry; azidentity's credentials cache tokens,
	// so this rarely costs a round trip. A credential that fails fails the
	// dial with ErrAuth, wrapping its error. Tokens never appear in an
	// error or a log line.
	Credential azcore.TokenCredential

	// TLSConfig is used for the HTTPS connection; nil uses the system's
	// roots. TrustCA makes one that also trusts a private CA, such as
	// Azurite's certificate.
	TLSConfig *tls.Config
	// DialTimeout bounds the TCP connect of each connection. Default 5 s.
	DialTimeout time.Duration
	// DialContext, if set, opens the TCP connections instead of a
	// net.Dialer with DialTimeout (to go through a tunnel, or to count
	// them). It must honour ctx.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Retry is the SDK's retry policy. The zero value uses this package's
	// defaults (3 retries, 100 ms doubling to at most 2 s, unless the
	// service's Retry-After says otherwise), which fail a request to an
	// unreachable service within about a second rather than the SDK's
	// default of over a minute.
	Retry policy.RetryOptions
	// NoShare keeps Register from sharing this source's connections with
	// the other containers of its account on its Budget (see
	// SharedFactory).
	NoShare bool
}

// Conn is one pooled connection: an SDK container client whose transport
// holds at most one keep-alive HTTPS connection. Its methods are the
// operations handlers need; Container gives the SDK client itself for
// anything else, bound to the same connection.
type Conn struct {
	client    *container.Client
	transport *http.Transport
	name      string // the container's
	sas       bool   // the credential is a SAS token
	scrub     *strings.Replacer
	tokens    *tokenMemo // Options.Credential's, or nil
}

// Container returns the SDK's client for this connection's container. Its
// requests run on this pooled connection, so it must not be used after the
// loan ends.
func (c *Conn) Container() *container.Client { return c.client }

// Ping makes one small request that checks the connection, the
// credential and the container: Get Container Properties with a shared
// key, or a listing of at most one blob with a SAS token (a container SAS
// cannot read the container's properties; it needs the List permission).
func (c *Conn) Ping(ctx context.Context) error {
	return c.wrap("ping", "", c.probe(ctx))
}

func (c *Conn) probe(ctx context.Context) error {
	if !c.sas {
		_, err := c.client.GetProperties(ctx, nil)
		return err
	}
	one := int32(1)
	_, err := c.client.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{MaxResults: &one}).NextPage(ctx)
	return err
}

// Close closes the connection's idle HTTP connection.
func (c *Conn) Close() error {
	c.transport.CloseIdleConnections()
	return nil
}

// connectionParts lists the key=value parts of a connection string.
func connectionParts(s string) map[string]string {
	parts := map[string]string{}
	for _, kv := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			parts[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
	}
	return parts
}

func hasKey(connStr string) bool { return connectionParts(connStr)["accountkey"] != "" }

// secrets returns what must never be shown: the account key and the SAS
// token, from wherever the options hold them.
func (o Options) secrets() []string {
	var s []string
	add := func(v string) {
		v = strings.TrimPrefix(v, "?")
		if v != "" {
			s = append(s, v)
			if sig := sigOf(v); sig != "" {
				s = append(s, sig, url.QueryEscape(sig))
			}
		}
	}
	add(o.AccountKey)
	add(o.SASToken)
	if o.ConnectionString != "" {
		p := connectionParts(o.ConnectionString)
		add(p["accountkey"])
		add(p["sharedaccesssignature"])
	}
	if u, err := url.Parse(o.ContainerURL); err == nil && u.RawQuery != "" {
		add(u.RawQuery)
	}
	return s
}

// sigOf returns the value of the sig parameter of a SAS token, if any.
func sigOf(token string) string {
	q, err := url.ParseQuery(token)
	if err != nil {
		return ""
	}
	return q.Get("sig")
}

func (o Options) validate() error {
	shared := o.AccountName != "" || o.AccountKey != ""
	if o.Credential != nil {
		u, err := url.Parse(o.ContainerURL)
		switch {
		case o.ConnectionString != "" || shared || o.SASToken != "":
			return errors.New("give Credential or a connection string, shared key or SAS token, not both")
		case o.ContainerURL == "":
			return errors.New("Credential needs ContainerURL")
		case err != nil || u.Scheme != "https" || u.Host == "":
			return errors.New("Credential needs an https ContainerURL with a host: a token is never sent in clear")
		case u.RawQuery != "":
			return errors.New("with Credential, ContainerURL must not carry a SAS token")
		case o.Container != "":
			return errors.New("Container is for ConnectionString; the container is in ContainerURL")
		}
		if o.DialTimeout < 0 {
			return errors.New("DialTimeout must not be negative")
		}
		return nil
	}
	switch {
	case o.ConnectionString != "" && o.ContainerURL != "":
		return errors.New("give ConnectionString or ContainerURL, not both")
	case o.ConnectionString != "":
		if o.Container == "" {
			return errors.New("ConnectionString needs Container")
		}
		if shared || o.SASToken != "" {
			return errors.New("with ConnectionString, the credential comes from it: AccountName, AccountKey and SASToken must be empty")
		}
		p := connectionParts(o.ConnectionString)
		if p["accountkey"] == "" && p["sharedaccesssignature"] == "" {
			return errors.New("ConnectionString has neither AccountKey nor SharedAccessSignature")
		}
	case o.ContainerURL != "":
		u, err := url.Parse(o.ContainerURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return errors.New("ContainerURL must be an http(s) URL with a host")
		}
		if o.Container != "" {
			return errors.New("Container is for ConnectionString; the container is in ContainerURL")
		}
		switch {
		case shared && o.SASToken != "":
			return errors.New("give a shared key or a SAS token, not both")
		case shared && (o.AccountName == "" || o.AccountKey == ""):
			return errors.New("a shared key needs both AccountName and AccountKey")
		case !shared && o.SASToken == "" && u.RawQuery == "":
			return errors.New("ContainerURL needs a shared key or a SAS token")
		}
	default:
		return errors.New("give ConnectionString or ContainerURL")
	}
	if o.DialTimeout < 0 {
		return errors.New("DialTimeout must not be negative")
	}
	return nil
}

// Factory checks opts and returns a Factory that opens one connection to
// the container per call: it builds a client with a transport of its own
// and makes the first request (the one Ping makes), so a wrong key or a
// missing container fails the dial with ErrAuth or ErrContainerNotFound. Errors never contain the key or the SAS token.
func Factory(opts Options) (pool.Factory[*Conn], error) {
	opts, retry, scrub, err := opts.prepare()
	if err != nil {
		return nil, err
	}
	// A client built now reports a bad connection string or key at once.
	if _, err := newConn(opts, retry, scrub); err != nil {
		return nil, err
	}
	return func(ctx context.Context) (*Conn, error) {
		c, err := newConn(opts, retry, scrub)
		if err != nil {
			return nil, err
		}
		if err := c.probe(ctx); err != nil {
			c.transport.CloseIdleConnections()
			return nil, c.wrap("connect", "", err)
		}
		return c, nil
	}, nil
}

// prepare validates opts and fills in the defaults.
func (opts Options) prepare() (Options, policy.RetryOptions, *strings.Replacer, error) {
	scrub := newScrubber(opts.secrets())
	if err := opts.validate(); err != nil {
		return opts, policy.RetryOptions{}, scrub, fmt.Errorf("azblob: %s", scrub.Replace(err.Error()))
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 5 * time.Second
	}
	retry := opts.Retry
	if retry.MaxRetries == 0 && retry.RetryDelay == 0 && retry.MaxRetryDelay == 0 {
		retry.MaxRetries = 3
		retry.RetryDelay = 100 * time.Millisecond
		retry.MaxRetryDelay = 2 * time.Second
	}
	return opts, retry, scrub, nil
}

func newConn(opts Options, retry policy.RetryOptions, scrub *strings.Replacer) (*Conn, error) {
	c := &Conn{transport: newTransport(opts)}
	if err := c.bindTo(opts, retry, scrub); err != nil {
		return nil, err
	}
	return c, nil
}

// newTransport makes the transport of one pooled connection: at most one
// keep-alive HTTPS connection, one request at a time.
func newTransport(opts Options) *http.Transport {
	dial := opts.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 30 * time.Second}).DialContext
	}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dial,
		TLSClientConfig:       opts.TLSConfig.Clone(),
		TLSHandshakeTimeout:   opts.DialTimeout,
		MaxConnsPerHost:       1, // the pooled connection
		MaxIdleConnsPerHost:   1,
		MaxIdleConns:          1,
		ExpectContinueTimeout: time.Second,
		// HTTP/1.1 only: one request at a time on the one connection.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
}

// bindTo makes c's client one for opts' container and credential, over
// c's transport (and its open connection, if any).
func (c *Conn) bindTo(opts Options, retry policy.RetryOptions, scrub *strings.Replacer) error {
	copts := &container.ClientOptions{ClientOptions: azcore.ClientOptions{
		Transport: &http.Client{Transport: c.transport},
		Retry:     retry,
	}}
	var (
		client *container.Client
		err    error
	)
	var tokens *tokenMemo
	switch {
	case opts.Credential != nil:
		tokens = &tokenMemo{cred: opts.Credential}
		client, err = container.NewClient(opts.ContainerURL, tokens, copts)
	case opts.ConnectionString != "":
		client, err = container.NewClientFromConnectionString(opts.ConnectionString, opts.Container, copts)
	case opts.AccountKey != "":
		var cred *container.SharedKeyCredential
		if cred, err = container.NewSharedKeyCredential(opts.AccountName, opts.AccountKey); err == nil {
			client, err = container.NewClientWithSharedKeyCredential(opts.ContainerURL, cred, copts)
		}
	default:
		u := opts.ContainerURL
		if t := strings.TrimPrefix(opts.SASToken, "?"); t != "" {
			sep := "?"
			if strings.Contains(u, "?") {
				sep = "&"
			}
			u += sep + t
		}
		client, err = container.NewClientWithNoCredential(u, copts)
	}
	if err != nil {
		return fmt.Errorf("azblob: %s", scrub.Replace(err.Error()))
	}
	c.client, c.scrub, c.tokens = client, scrub, tokens
	c.sas = opts.AccountKey == "" && !hasKey(opts.ConnectionString) && opts.Credential == nil
	c.name = ""
	if u, perr := url.Parse(client.URL()); perr == nil {
		c.name = path.Base(u.Path)
	}
	return nil
}

// TrustCA returns a TLS configuration (TLS 1.2 or later) that trusts the
// system's roots and the PEM certificates in file, for Options.TLSConfig
// when the service's certificate comes from a private CA: Azurite's
// self-signed one, or a proxy's. It fails, naming file, if the file cannot
// be read or holds no certificate.
func TrustCA(file string) (*tls.Config, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("azblob: CA certificate: %w", err)
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("azblob: CA certificate: no PEM certificate in %s", file)
	}
	return &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}, nil
}

// Register registers a Blob container under id in reg, pooled with cfg.
// reg may hold only Blob sources (PooledRegistry[*Conn]) or sources of
// mixed kinds (PooledRegistry[pool.Connector]). ropts are passed on, so
// pool.WithTestConnect() checks the source now. Errors name the ID and
// never contain the key or the SAS token.
//
// A source on a pool.Budget shares its keep-alive connections with the
// sources of the other containers of its account, with the same
// credential, on that Budget (see SharedFactory), unless opts.NoShare is
// set or cfg.Share is set already.
func Register[C pool.Connector](ctx context.Context, reg *pool.PooledRegistry[C], id string, opts Options, cfg pool.Config, ropts ...pool.RegisterOption) error {
	dial, err := Factory(opts)
	if err == nil && cfg.Budget != nil && !opts.NoShare && cfg.Share.Group == "" {
		dial, cfg.Share, err = SharedFactory(opts)
	}
	if err != nil {
		return &sourceError{id: id, err: err}
	}
	f, err := pool.Adapt[C](dial)
	if err != nil {
		return fmt.Errorf("azblob: source %q: this registry cannot hold Blob connections (%w)", id, err)
	}
	return reg.Register(ctx, id, f, cfg, ropts...)
}

// sourceError names the source of an error of Factory or SharedFactory,
// whose own "azblob: " it drops, so that the package is named once.
type sourceError struct {
	id  string
	err error
}

func (e *sourceError) Error() string {
	return fmt.Sprintf("azblob: source %q: %s", e.id, strings.TrimPrefix(e.err.Error(), "azblob: "))
}

func (e *sourceError) Unwrap() error { return e.err }

// With runs fn with a connection of Blob source id, borrowed from reg for
// the length of the call, as PooledRegistry.With does. A source that is
// not a Blob source returns an error naming its type, and fn is not
// called. A reader fn opens must be closed before fn returns; to hand a
// blob's body past the call, use Open.
func With[C pool.Connector](ctx context.Context, reg *pool.PooledRegistry[C], id string, fn func(*Conn) error) error {
	return reg.With(ctx, id, func(c C) error {
		bc, ok := any(c).(*Conn)
		if !ok {
			return notBlob(id, c)
		}
		return fn(bc)
	})
}

func notBlob(id string, c any) error {
	return fmt.Errorf("azblob: source %q is not a Blob source (its connections are %T)", id, c)
}

// CreateContainer creates the container opts names if it does not exist
// yet. It is for development and tests (a fresh Azurite holds no
// container); it needs a credential allowed to create containers.
func CreateContainer(ctx context.Context, opts Options) error {
	opts, retry, scrub, err := opts.prepare()
	if err != nil {
		return err
	}
	c, err := newConn(opts, retry, scrub)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.client.Create(ctx, nil)
	if re := (*azcore.ResponseError)(nil); errors.As(err, &re) && re.ErrorCode == "ContainerAlreadyExists" {
		return nil
	}
	return c.wrap("create container", "", err)
}
