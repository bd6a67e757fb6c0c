// Package blobload drives the same Blob Storage load through three kinds of
// client, for the benchmark in bench/ and `poolbench -blob`:
//
//   - Pool: the pooled connector, MaxSize connections;
//   - Shared: one SDK client shared by every goroutine, on a transport set
//     up as the SDK's default one (what an SDK user writes);
//   - PerRequest: a new SDK client, on a new transport, for each request
//     (a new connection per request, as before pooling).
//
// Each run reports requests per second, p50 and p99 latency, and the peak
// of TCP connections the contender had open at once, counted by its
// dialer. (OpenConns counts them from the operating system instead, as the
// tests do; reading /proc every millisecond would cost the run most of a
// core.)
package blobload

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/azblob"
)

// Target is the container the load runs against.
type Target struct {
	ConnectionString string
	Container        string
	TLS              *tls.Config // nil: the system's roots
}

// What Prepare writes.
const (
	ReadBlob   = "bench/one-kib" // 1 KiB, read by Read
	ListPrefix = "bench/list/"   // 100 blobs, listed by List
	ListCount  = 100
)

// Workload is one kind of request.
type Workload string

// The workloads.
const (
	Read Workload = "read" // read the 1 KiB blob
	List Workload = "list" // list the 100-blob prefix
)

// Contender is one kind of client.
type Contender string

// The contenders.
const (
	Pool       Contender = "pool"
	Shared     Contender = "shared"
	PerRequest Contender = "per-request"
)

// Contenders lists every contender.
var Contenders = []Contender{Pool, Shared, PerRequest}

func (t Target) options() azblob.Options {
	return azblob.Options{ConnectionString: t.ConnectionString, Container: t.Container, TLSConfig: t.TLS}
}

// connCounter dials TCP connections and keeps the number open and its
// peak.
type connCounter struct {
	open, peak atomic.Int64
	dialer     net.Dialer
}

func (cc *connCounter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := cc.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	n := cc.open.Add(1)
	for p := cc.peak.Load(); n > p && !cc.peak.CompareAndSwap(p, n); p = cc.peak.Load() {
	}
	return &countedConn{Conn: c, cc: cc}, nil
}

type countedConn struct {
	net.Conn
	cc   *connCounter
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.cc.open.Add(-1) })
	return c.Conn.Close()
}

// Prepare creates the container if needed and writes the blobs the
// workloads read. It returns the 1 KiB blob's bytes.
func Prepare(ctx context.Context, t Target) ([]byte, error) {
	if err := azblob.CreateContainer(ctx, t.options()); err != nil {
		return nil, err
	}
	dial, err := azblob.Factory(t.options())
	if err != nil {
		return nil, err
	}
	c, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	data := make([]byte, 1<<10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := c.Upload(ctx, ReadBlob, bytes.NewReader(data), nil); err != nil {
		return nil, err
	}
	for i := range ListCount {
		if err := c.Upload(ctx, fmt.Sprintf("%s%03d", ListPrefix, i), strings.NewReader("x"), nil); err != nil {
			return nil, err
		}
	}
	return data, nil
}

// sdkTransport is set up as the SDK's default transport is (azcore's
// shared http.Client), with the target's roots.
func sdkTransport(t Target, cc *connCounter) *http.Transport {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.TLS != nil {
		cfg = t.TLS.Clone()
	}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           cc.dial, // a net.Dialer{Timeout: 30 s, KeepAlive: 30 s}
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   10,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       cfg,
	}
}

func sdkClient(t Target, tr *http.Transport) (*container.Client, error) {
	return container.NewClientFromConnectionString(t.ConnectionString, t.Container, &container.ClientOptions{
		ClientOptions: azcore.ClientOptions{Transport: &http.Client{Transport: tr}},
	})
}

// client is one contender, set up for a run.
type client struct {
	do    func(ctx context.Context, w Workload) error
	close func()
}

func newClient(t Target, c Contender, maxSize int, want []byte, cc *connCounter) (*client, error) {
	switch c {
	case Pool:
		opts := t.options()
		opts.DialContext = cc.dial
		dial, err := azblob.Factory(opts)
		if err != nil {
			return nil, err
		}
		cfg := pool.DefaultConfig()
		cfg.MaxSize = maxSize
		p, err := pool.New(dial, cfg)
		if err != nil {
			return nil, err
		}
		return &client{
			do: func(ctx context.Context, w Workload) error {
				return p.With(ctx, func(c *azblob.Conn) error { return pooledOp(ctx, c, w, want) })
			},
			close: func() { _ = p.Close() },
		}, nil
	case Shared:
		tr := sdkTransport(t, cc)
		sc, err := sdkClient(t, tr)
		if err != nil {
			return nil, err
		}
		return &client{
			do:    func(ctx context.Context, w Workload) error { return sdkOp(ctx, sc, w, want) },
			close: tr.CloseIdleConnections,
		}, nil
	case PerRequest:
		return &client{
			do: func(ctx context.Context, w Workload) error {
				tr := sdkTransport(t, cc)
				defer tr.CloseIdleConnections()
				sc, err := sdkClient(t, tr)
				if err != nil {
					return err
				}
				return sdkOp(ctx, sc, w, want)
			},
			close: func() {},
		}, nil
	}
	return nil, fmt.Errorf("blobload: unknown contender %q", c)
}

func pooledOp(ctx context.Context, c *azblob.Conn, w Workload, want []byte) error {
	if w == List {
		p, err := c.ListPage(ctx, ListPrefix, "", 0)
		if err == nil && len(p.Blobs) != ListCount {
			err = fmt.Errorf("listed %d blobs, want %d", len(p.Blobs), ListCount)
		}
		return err
	}
	rc, err := c.Read(ctx, ReadBlob)
	if err != nil {
		return err
	}
	return check(rc, want)
}

func sdkOp(ctx context.Context, cc *container.Client, w Workload, want []byte) error {
	if w == List {
		prefix := ListPrefix
		resp, err := cc.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: &prefix}).NextPage(ctx)
		if err == nil && (resp.Segment == nil || len(resp.Segment.BlobItems) != ListCount) {
			err = errors.New("listed the wrong number of blobs")
		}
		return err
	}
	resp, err := cc.NewBlobClient(ReadBlob).DownloadStream(ctx, nil)
	if err != nil {
		return err
	}
	return check(resp.Body, want)
}

func check(rc io.ReadCloser, want []byte) error {
	got, err := io.ReadAll(rc)
	err = errors.Join(err, rc.Close())
	if err == nil && !bytes.Equal(got, want) {
		err = fmt.Errorf("read %d bytes that differ from the %d written", len(got), len(want))
	}
	return err
}

// Result is what one run measured.
type Result struct {
	Requests  int
	Elapsed   time.Duration
	PerSecond float64
	P50, P99  time.Duration
	PeakConns int // TCP connections open to the service at once, at most
	// Latencies holds every request's latency, sorted.
	Latencies []time.Duration
}

// Run sends requests of workload w through contender c from clients
// goroutines, until n requests are done (n > 0) or d has passed (d > 0),
// after a warm-up of a few requests per goroutine. The first failed
// request ends the run with its error. want is what Prepare returned.
func Run(ctx context.Context, t Target, c Contender, w Workload, clients, maxSize, n int, d time.Duration, want []byte) (Result, error) {
	cc := &connCounter{dialer: net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}}
	cl, err := newClient(t, c, maxSize, want, cc)
	if err != nil {
		return Result{}, err
	}
	defer cl.close()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var warm sync.WaitGroup
	for range clients {
		warm.Go(func() {
			for range 3 {
				if err := cl.do(ctx, w); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	warm.Wait()
	if err := context.Cause(ctx); err != nil {
		return Result{}, err
	}

	cc.peak.Store(cc.open.Load()) // the peak of the measured part only
	var (
		next     atomic.Int64
		mu       sync.Mutex
		lat      []time.Duration
		wg       sync.WaitGroup
		deadline time.Time
	)
	start := time.Now()
	if d > 0 {
		deadline = start.Add(d)
	}
	for range clients {
		wg.Go(func() {
			local := make([]time.Duration, 0, 1024)
			for i := next.Add(1); n <= 0 || i <= int64(n); i = next.Add(1) {
				if !deadline.IsZero() && time.Now().After(deadline) {
					break
				}
				t0 := time.Now()
				if err := cl.do(ctx, w); err != nil {
					cancel(err)
					break
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	r := Result{Requests: len(lat), Elapsed: elapsed, PeakConns: int(cc.peak.Load()), Latencies: lat}
	if err := context.Cause(ctx); err != nil {
		return r, err
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		r.PerSecond = float64(len(lat)) / elapsed.Seconds()
		r.P50 = lat[len(lat)/2]
		r.P99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return r, nil
}

// OpenConns counts this process's TCP sockets connected to port, from the
// operating system: the socket inodes in /proc/self/fd, looked up in
// /proc/net/tcp and tcp6. It returns 0 where /proc is missing.
func OpenConns(port int) int {
	ours := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err != nil {
			continue // closed since ReadDir
		}
		if inode, ok := strings.CutPrefix(target, "socket:["); ok {
			ours[strings.TrimSuffix(inode, "]")] = true
		}
	}
	want := fmt.Sprintf(":%04X", port)
	n := 0
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] == "0A" { // 0A: LISTEN
				continue
			}
			if strings.HasSuffix(fields[2], want) && ours[fields[9]] {
				n++
			}
		}
		f.Close()
	}
	return n
}
