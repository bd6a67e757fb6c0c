package azblob_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/azblob"
)

// upload writes blobs through a pool of their own.
func upload(t testing.TB, a azurite, name string, blobs map[string][]byte) {
	t.Helper()
	dial, err := azblob.Factory(a.options(name))
	require.NoError(t, err)
	c, err := dial(context.Background())
	require.NoError(t, err)
	defer c.Close()
	for n, b := range blobs {
		require.NoError(t, c.Upload(context.Background(), n, bytes.NewReader(b), nil))
	}
}

// 64 goroutines on a pool of MaxSize 8 never have more than 8 TCP
// connections open to Azurite, counted by the operating system.
func TestConnectionsBoundedByMaxSize(t *testing.T) {
	a := needAzurite(t)
	name := a.newContainer(t)
	data := randomBytes(t, 1<<10)
	upload(t, a, name, map[string][]byte{"one-kib": data})
	before := tcpConnsTo(t, a.port)

	cfg := pool.DefaultConfig()
	cfg.MaxSize = 8
	reg := newRegistry(t, a, name, cfg)
	ctx := context.Background()

	done := make(chan struct{})
	peak := make(chan int)
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		most := 0
		for {
			most = max(most, tcpConnsTo(t, a.port)-before)
			select {
			case <-done:
				peak <- most
				return
			case <-tick.C:
			}
		}
	}()
	var wg sync.WaitGroup
	var reads atomic.Int64
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			for range 20 {
				rc, err := azblob.Open(ctx, reg, "blob", "one-kib")
				if err == nil {
					var got []byte
					got, err = io.ReadAll(rc)
					err = errors.Join(err, rc.Close())
					if err == nil && !bytes.Equal(got, data) {
						err = fmt.Errorf("read %d wrong bytes", len(got))
					}
				}
				if err != nil {
					errs <- err
					return
				}
				reads.Add(1)
			}
		})
	}
	wg.Wait()
	close(done)
	most := <-peak
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	assert.Equal(t, int64(64*20), reads.Load())
	assert.LessOrEqual(t, most, 8, "TCP connections to Azurite open at once")
	assert.Positive(t, most)
	s := reg.Stats()["blob"]
	assert.LessOrEqual(t, s.Total, 8)
	t.Logf("%d reads by 64 goroutines, at most %d TCP connections open; pool stats %+v", reads.Load(), most, s)
}

// A reader holds its connection until it is closed, even when closed
// before its end, and Close may be called twice.
func TestReaderHoldsConnectionUntilClosed(t *testing.T) {
	a := needAzurite(t)
	reg, big := oneBigBlob(t, a)
	p, err := reg.Pool(context.Background(), "blob")
	require.NoError(t, err)
	ctx := context.Background()
	open := tcpConnsTo(t, a.port) // the pool's one, and others' idle ones

	for round := range 3 {
		rc, err := azblob.Open(ctx, reg, "blob", "big")
		require.NoError(t, err)
		head := make([]byte, 1000)
		_, err = io.ReadFull(rc, head)
		require.NoError(t, err)
		require.Equal(t, big[:1000], head)
		assert.Equal(t, 1, p.Stats().InUse, "round %d: the open reader holds the connection", round)
		_, err = p.TryAcquire(ctx)
		require.ErrorIs(t, err, pool.ErrPoolExhausted)

		require.NoError(t, rc.Close()) // most of 8 MiB unread
		require.NoError(t, rc.Close())
		assert.Zero(t, p.Stats().InUse, "round %d: Close gave the connection back", round)
		pc, err := p.TryAcquire(ctx)
		require.NoError(t, err)
		pc.Release()
	}
	assert.LessOrEqual(t, tcpConnsTo(t, a.port), open, "a body cut short leaves no connection open")
}

// A reader that is never closed is a leaked loan, which the core reports
// with the stack that opened it.
func TestReaderNeverClosedIsReported(t *testing.T) {
	a := needAzurite(t)
	name := a.newContainer(t)
	upload(t, a, name, map[string][]byte{"x": []byte("hello")})
	logs := newLogSink("held longer than LeakThreshold")
	cfg := pool.DefaultConfig()
	cfg.LeakThreshold = 20 * time.Millisecond
	cfg.Logger = slog.New(logs)
	reg := newRegistry(t, a, name, cfg)

	rc, err := azblob.Open(context.Background(), reg, "blob", "x")
	require.NoError(t, err)
	select {
	case <-logs.found:
	case <-time.After(10 * time.Second):
		t.Fatal("the open reader was not reported as a leak")
	}
	assert.Equal(t, int64(1), reg.Stats()["blob"].LeakedLoans)
	assert.Contains(t, logs.text(), "TestReaderNeverClosedIsReported", "the report names where the reader was opened")
	require.NoError(t, rc.Close())
	assert.Zero(t, reg.Stats()["blob"].InUse)
}

// freshAzurite starts an Azurite of the test's own, with extra arguments,
// on a free port, and returns how to reach it (the shared one's account
// and certificate) and its process.
func freshAzurite(t testing.TB, extra ...string) (azurite, *exec.Cmd) {
	t.Helper()
	shared := needAzurite(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	a := azurite{connStr: strings.Replace(shared.connStr, fmt.Sprintf(":%d/", shared.port), fmt.Sprintf(":%d/", port), 1), tls: shared.tls, port: port}
	require.Contains(t, a.connStr, fmt.Sprintf(":%d/", port))
	return a, ownAzurite(t, port, extra...)
}

// ownAzurite runs an Azurite of the test's own on port, with extra
// arguments, so that it can be killed or configured; it returns once
// Azurite listens.
func ownAzurite(t testing.TB, port int, extra ...string) *exec.Cmd {
	t.Helper()
	bin, cert, key := os.Getenv("AZURITE_BLOB"), os.Getenv("AZURITE_CA_CERT"), os.Getenv("AZURITE_CA_KEY")
	if bin == "" || key == "" {
		t.Skip("AZURITE_BLOB and AZURITE_CA_KEY are not set; set them to Azurite's command and its certificate's key to run this test, which starts an Azurite of its own (.ci/services.sh sets them, and also installs Debian packages and starts PostgreSQL and PgBouncer)")
	}
	args := append([]string{"--blobHost", "127.0.0.1", "--blobPort", fmt.Sprint(port),
		"--cert", cert, "--key", key, "--inMemoryPersistence", "--skipApiVersionCheck"}, extra...)
	cmd := exec.Command(bin, args...)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = cmd.Stdout
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	listening := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		var seen []string
		for sc.Scan() {
			seen = append(seen, sc.Text())
			if strings.Contains(sc.Text(), "successfully listens") {
				listening <- nil
				_, _ = io.Copy(io.Discard, out)
				return
			}
		}
		listening <- fmt.Errorf("azurite exited: %s", strings.Join(seen, "\n"))
	}()
	select {
	case err := <-listening:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("azurite did not start within 30 s")
	}
	return cmd
}

// Azurite killed under load: every request fails, with an error that says
// what happened, within a bound; once it is back, the pool serves again
// within 1 s.
func TestAzuriteKilledMidLoad(t *testing.T) {
	a, az := freshAzurite(t)
	port := a.port

	const name = "killed"
	data := []byte("still here")
	setUp := func() {
		_, err := a.admin(t, name).Create(context.Background(), nil)
		require.NoError(t, err)
		upload(t, a, name, map[string][]byte{"x": data})
	}
	setUp()

	cfg := pool.DefaultConfig()
	cfg.MaxSize = 4
	cfg.AcquireTimeout = 5 * time.Second
	reg := newRegistry(t, a, name, cfg)

	type result struct {
		start, end time.Time
		err        error
	}
	var (
		mu      sync.Mutex
		results []result
	)
	// Each phase waits for the load to show what it must.
	phase := atomic.Int32{} // 0 before the kill, 1 down, 2 back
	var okBefore, failedWhileDown, okAfter atomic.Int64
	enough := make(chan struct{}, 3)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ph := phase.Load()
				r := result{start: time.Now()}
				rc, err := azblob.Open(context.Background(), reg, "blob", "x")
				if err == nil {
					var got []byte
					got, err = io.ReadAll(rc)
					err = errors.Join(err, rc.Close())
					if err == nil && !bytes.Equal(got, data) {
						err = fmt.Errorf("wrong data %q", got)
					}
				}
				r.end, r.err = time.Now(), err
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
				switch {
				case ph == 0 && err == nil && okBefore.Add(1) == 100:
					enough <- struct{}{}
				case ph == 1 && err != nil && failedWhileDown.Add(1) == 30:
					enough <- struct{}{}
				case ph == 2 && err == nil && okAfter.Add(1) == 1:
					enough <- struct{}{}
				}
			}
		})
	}
	wait := func(what string) {
		select {
		case <-enough:
		case <-time.After(30 * time.Second):
			t.Fatalf("timed out waiting for %s", what)
		}
	}
	wait("100 reads before the kill")
	require.NoError(t, az.Process.Kill())
	_ = az.Wait()
	killed := time.Now()
	phase.Store(1)
	wait("30 failed reads while Azurite is down")

	ownAzurite(t, port) // killed by its cleanup
	back := time.Now()
	setUp() // in-memory: the container went with the process
	ready := time.Now()
	phase.Store(2)
	wait("a read after the restart")
	served := time.Now()
	close(stop)
	wg.Wait()

	// Requests that started after the kill and ended before the restart
	// all failed, each within the bound, with an error that says so.
	const bound = 5 * time.Second // SDK retries (about 0.7 s) while waiting behind 4 others
	var down []result
	for _, r := range results {
		if r.start.After(killed) && r.end.Before(back) {
			down = append(down, r)
		}
	}
	require.NotEmpty(t, down)
	slowest := time.Duration(0)
	for _, r := range down {
		require.Error(t, r.err, "a read succeeded while Azurite was down")
		slowest = max(slowest, r.end.Sub(r.start))
		var be *azblob.Error
		if !errors.Is(r.err, pool.ErrDial) && !errors.As(r.err, &be) {
			t.Errorf("unclear error while down: %v", r.err)
		}
		assert.Contains(t, r.err.Error(), fmt.Sprint(port), "the error names the address")
	}
	assert.Less(t, slowest, bound, "slowest failure while down")
	assert.Less(t, served.Sub(ready), time.Second, "from the restarted Azurite holding the container again to the first read served")
	t.Logf("down: %d reads failed, slowest in %v (first error: %v); back: restart took %v to set up, first read served %v after that",
		len(down), slowest, down[0].err, ready.Sub(back), served.Sub(ready))
}

// A reader whose context ends mid-body fails with the context's error,
// still gives its connection back on Close, and the connection serves
// the next reader.
func TestReaderContextEndsMidBody(t *testing.T) {
	reg, big := oneBigBlob(t, needAzurite(t))

	ctx, cancel := context.WithCancel(context.Background())
	rc, err := azblob.Open(ctx, reg, "blob", "big")
	require.NoError(t, err)
	head := make([]byte, 4096)
	_, err = io.ReadFull(rc, head)
	require.NoError(t, err)
	cancel()
	_, err = io.Copy(io.Discard, rc)
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 1, reg.Stats()["blob"].InUse, "held until Close")
	require.NoError(t, rc.Close())
	assert.Zero(t, reg.Stats()["blob"].InUse)

	rc, err = azblob.Open(context.Background(), reg, "blob", "big")
	require.NoError(t, err)
	got, err := io.ReadAll(rc)
	require.NoError(t, err)
	require.NoError(t, rc.Close())
	require.True(t, bytes.Equal(big, got))
}

// oneBigBlob makes a container holding "big", 8 MiB of random bytes, and a
// registry whose source "blob" reads it through a pool of one connection.
func oneBigBlob(t *testing.T, a azurite) (*pool.PooledRegistry[*azblob.Conn], []byte) {
	name := a.newContainer(t)
	big := randomBytes(t, 8<<20)
	upload(t, a, name, map[string][]byte{"big": big})
	cfg := pool.DefaultConfig()
	cfg.MaxSize = 1
	return newRegistry(t, a, name, cfg), big
}
