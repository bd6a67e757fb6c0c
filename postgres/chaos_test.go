package postgres_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/postgres"
)

// chaosLoad is 64 clients on one source: 48 read through postgres.With
// under Idempotent, 16 insert a row each time (a write, retried only
// when nothing reached the server). Each insert carries its client and
// sequence number, in a table without a unique key, so that a write run
// twice shows as two rows.
type chaosLoad struct {
	reg   *pool.PooledRegistry[*postgres.Conn]
	table string

	reads, readsOK        atomic.Int64
	readFailures          atomic.Int64
	writes, writeFailures atomic.Int64

	mu       sync.Mutex
	readErrs []error
	written  map[[2]int]bool // (client, seq) -> the insert reported success

	goal    atomic.Int64  // reads that close goalMet; 0 for none
	goalMet chan struct{} // replaced by waitReads

	stop chan struct{}
	wg   sync.WaitGroup
}

// waitReads returns once n reads have succeeded.
func (l *chaosLoad) waitReads(t *testing.T, n int64) {
	t.Helper()
	met := make(chan struct{})
	l.mu.Lock()
	l.goalMet = met
	l.mu.Unlock()
	l.goal.Store(n)
	if l.readsOK.Load() >= n {
		l.reached()
	}
	select {
	case <-met:
	case <-t.Context().Done():
	}
}

// reached closes goalMet once, when the goal is met.
func (l *chaosLoad) reached() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.goalMet != nil && l.goal.Load() > 0 && l.readsOK.Load() >= l.goal.Load() {
		close(l.goalMet)
		l.goalMet = nil
	}
}

func startChaosLoad(t *testing.T, a *pgx.Conn, cfg *pgx.ConnConfig, pcfg pool.Config) *chaosLoad {
	t.Helper()
	l := &chaosLoad{
		reg:     pool.NewRegistry[*postgres.Conn](),
		table:   fmt.Sprintf("chaos_%d", time.Now().UnixNano()%1e9),
		written: map[[2]int]bool{},
		stop:    make(chan struct{}),
	}
	_, err := a.Exec(bg, "create table "+l.table+" (client int, seq int)")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = a.Exec(bg, "drop table if exists "+l.table) })
	t.Cleanup(func() { _ = l.reg.Close() })
	require.NoError(t, l.reg.Register(bg, "db", postgres.Factory(cfg, postgres.Options{}), pcfg))

	for client := range 64 {
		writer := client < 16
		l.wg.Go(func() {
			for seq := 0; ; seq++ {
				select {
				case <-l.stop:
					return
				default:
				}
				if writer {
					l.write(client, seq)
				} else {
					l.read(seq)
				}
			}
		})
	}
	return l
}

func (l *chaosLoad) read(seq int) {
	err := postgres.With(postgres.Idempotent(bg), l.reg, "db", func(c *pgx.Conn) error {
		var v int
		return c.QueryRow(bg, "select $1::int", seq).Scan(&v)
	})
	l.reads.Add(1)
	if err != nil {
		l.readFailures.Add(1)
		l.mu.Lock()
		l.readErrs = append(l.readErrs, err)
		l.mu.Unlock()
		time.Sleep(time.Millisecond) // a client's pause before it tries again, not a sync point
		return
	}
	if n := l.readsOK.Add(1); l.goal.Load() > 0 && n >= l.goal.Load() {
		l.reached()
	}
}

func (l *chaosLoad) write(client, seq int) {
	err := postgres.With(bg, l.reg, "db", func(c *pgx.Conn) error {
		_, err := c.Exec(bg, "insert into "+l.table+" (client, seq) values ($1, $2)", client, seq)
		return err
	})
	l.writes.Add(1)
	if err != nil {
		l.writeFailures.Add(1)
		defer time.Sleep(time.Millisecond) // a client's pause before it tries again
	}
	l.mu.Lock()
	l.written[[2]int{client, seq}] = err == nil
	l.mu.Unlock()
}

// finish stops the load and checks the writes against the table: no row
// twice, and every insert that reported success has its row. It returns
// how many failed inserts left a row anyway (they reached the server and
// were not retried: the caller cannot know, and is told so by an error).
func (l *chaosLoad) finish(t *testing.T, a *pgx.Conn) (ambiguous int) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	rows, err := a.Query(bg, "select client, seq, count(*) from "+l.table+" group by 1, 2")
	require.NoError(t, err)
	found := map[[2]int]int{}
	for rows.Next() {
		var c, s, n int
		require.NoError(t, rows.Scan(&c, &s, &n))
		found[[2]int{c, s}] = n
	}
	require.NoError(t, rows.Err())
	for k, n := range found {
		assert.Equal(t, 1, n, "insert %v ran %d times", k, n)
		if !l.written[k] {
			ambiguous++
		}
	}
	for k, ok := range l.written {
		if ok {
			assert.Equal(t, 1, found[k], "insert %v reported success but its row is missing", k)
		}
	}
	return ambiguous
}

// Every backend of the source is terminated each second for 5 s, under 64
// clients: no read-only request fails (a dead idle connection is found by
// IsValid's peek before a loan; a read that was on a connection when it
// died runs again on another), no insert runs twice, and every insert
// that reported success is in the table.
func TestBackendsKilledEverySecondUnderLoad(t *testing.T) {
	base := dsn(t)
	a := admin(t)
	cfg, tag := tagged(t, base)
	pcfg := pool.DefaultConfig()
	pcfg.MinSize, pcfg.MaxSize = 4, 16
	pcfg.AcquireTimeout = 10 * time.Second
	l := startChaosLoad(t, a, cfg, pcfg)

	var killed int
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for range 5 {
		<-tick.C
		var n int
		require.NoError(t, a.QueryRow(bg, "select count(pg_terminate_backend(pid)) from pg_stat_activity where application_name = $1", tag).Scan(&n))
		killed += n
	}
	ambiguous := l.finish(t, a)

	st := l.reg.Stats()["db"]
	assert.Zero(t, l.readFailures.Load(), "read-only requests failed: %v", firstErrs(l.readErrs))
	assert.Greater(t, killed, 20, "too few backends were terminated to prove anything")
	assert.GreaterOrEqual(t, st.ClosedBroken, int64(killed)/2, "the terminated backends were not closed as broken")
	t.Logf("%d backends terminated in 5 kills; %d reads, %d failed; %d inserts, %d failed (%d of those reached the server); %d connections closed as broken, %d dialled",
		killed, l.reads.Load(), l.readFailures.Load(), l.writes.Load(), l.writeFailures.Load(), ambiguous, st.ClosedBroken, st.Created)
}

func firstErrs(errs []error) []error { return errs[:min(len(errs), 3)] }

// The server restarts (a fast shutdown, then a start) under the same 64
// clients: no read fails on a dead connection. Reads that arrive while
// the server refuses connections fail fast with pool.ErrDial, as the
// pool promises for a source that is down; none fails otherwise. No
// insert runs twice, and every insert that reported success is in the
// table. It runs only with POOL_TEST_RESTARTS_PG=yes and PG_CTLCLUSTER.
func TestServerRestartUnderLoadLosesNoRead(t *testing.T) {
	base := dsn(t)
	pgctl := serverControl(t)
	a := admin(t)
	cfg, _ := tagged(t, base)
	pcfg := pool.DefaultConfig()
	pcfg.MinSize, pcfg.MaxSize = 4, 16
	pcfg.AcquireTimeout = 10 * time.Second
	l := startChaosLoad(t, a, cfg, pcfg)

	l.waitReads(t, 2000)
	pgctl("restart -m fast")
	restarted := time.Now()
	// Serve on until 5,000 more reads have succeeded after it.
	l.waitReads(t, l.readsOK.Load()+5000)
	// The admin connection died with the server: check with a new one.
	a2, err := pgx.Connect(bg, base)
	require.NoError(t, err)
	defer a2.Close(bg)
	ambiguous := l.finish(t, a2)

	var down, other []error
	for _, err := range l.readErrs {
		if errors.Is(err, pool.ErrDial) {
			down = append(down, err)
		} else {
			other = append(other, err)
		}
	}
	assert.Empty(t, other, "reads failed other than by a refused dial: %v", firstErrs(other))
	t.Logf("%d reads, %d failed fast while the server refused connections, %d failed otherwise; %d inserts, %d failed (%d of those reached the server); 5,000 reads served %v after the restart returned",
		l.reads.Load(), len(down), len(other), l.writes.Load(), l.writeFailures.Load(), ambiguous, time.Since(restarted).Round(time.Millisecond))
}
