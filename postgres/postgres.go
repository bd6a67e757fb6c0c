// Package postgres connects pool to PostgreSQL through jackc/pgx v5: Conn
// wraps one *pgx.Conn and implements pool.Connector, pool.Validator, pool.ResetChecker and
// pool.Resetter, and Factory dials them.
//
// No error this package returns contains the password of the DSN or
// ConnConfig it was given, or one that Options.Password returned.
//
// # Entra ID (Azure Database for PostgreSQL)
//
// Azure Database for PostgreSQL accepts a Microsoft Entra ID access token
// as the password. Give Options.Password a function that asks an azidentity
// credential for one; each new connection then authenticates with a
// current token, and azidentity caches it until it nears expiry, so most
// dials cost no extra round trip:
//
//	cred, err := azidentity.NewDefaultAzureCredential(nil) // managed identity, workload identity, az login...
//	if err != nil { ... }
//	opts := postgres.Options{Password: func(ctx context.Context) (string, error) {
//		tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{
//			Scopes: []string{"https://ossrdbms-aad.database.windows.net/.default"},
//		})
//		return tok.Token, err
//	}}
//	cfg := pool.DefaultConfig() // timeouts, pings, lifetimes; a zero Config is invalid
//	cfg.MaxSize = 10
//	err = postgres.Register(ctx, reg, "sales",
//		"postgres://app-identity@myserver.postgres.database.azure.com:5432/sales?sslmode=require",
//		opts, cfg)
//
// The DSN's user is the Entra principal's name as the server knows it (the
// managed identity's or the group's). A token is checked only when a
// connection opens, so connections keep working after it expires; set
// pool.Config.MaxLifetime below the server's limits as usual.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/deepanalyze/pool"
)

// ResetMode says how much session state Reset clears when a connection is
// released.
type ResetMode int

const (
	// ResetSession (the default) gives the next borrower a fresh session at
	// the cost of no round trip after plain queries. Every statement the
	// borrower sends through the pgx.Conn is classified as it goes (by a pgx
	// tracer, chained to the ConnConfig's own): row reads and writes and
	// transaction control are harmless; anything else (SET, set_config, SET
	// ROLE, SET SESSION AUTHORIZATION, temporary tables, advisory locks,
	// LISTEN, cursors, PREPARE, DO, CALL, ...) marks the session dirty. On
	// release an open or failed transaction is rolled back, and a dirty
	// session is reset in the same round trip: what DISCARD ALL clears,
	// except the prepared statements, so pgx's statement cache stays valid.
	// A statement prepared by name, or a change of search_path, also
	// forgets the prepared statements (pgx's DeallocateAll, one more round
	// trip). Not seen: statements sent through the PgConn underneath, and
	// session state changed inside a function that a SELECT calls; use
	// ResetAlways for those.
	ResetSession ResetMode = iota
	// ResetTransaction only rolls back an open or failed transaction (no
	// round trip when there is none), as pgxpool does. Session settings and
	// temporary tables then carry over between borrowers.
	ResetTransaction
	// ResetAlways resets the whole session on every release, whatever the
	// borrower did: pgx's DeallocateAll, then DISCARD ALL. Two round trips
	// per release, and the next borrower's queries are prepared again.
	ResetAlways
)

// Options tune the connections a Factory dials.
type Options struct {
	// ConnectTimeout bounds each connection attempt, on top of the
	// pool's DialTimeout. Default (zero) 10 seconds.
	ConnectTimeout time.Duration
	// Reset is what Reset clears on release. Default ResetSession.
	Reset ResetMode
	// CloseTimeout bounds the graceful Terminate message on Close. Default
	// (zero) 5 seconds.
	CloseTimeout time.Duration
	// EnvDefaults lets an empty DSN stand for libpq's defaults: the PG*
	// environment variables, then the local socket as the OS user. By
	// default an empty DSN is an error, since it is more often a missing
	// setting than a choice.
	EnvDefaults bool
	// Password, if set, is called for each new connection and its answer
	// is the password that connection authenticates with, in place of the
	// DSN's or ConnConfig's. It suits credentials that rotate or expire,
	// such as an Entra ID access token for Azure Database for PostgreSQL
	// (see the package documentation): connections already open keep
	// working, and the next one asks again. ctx is the dial's, bounded by
	// ConnectTimeout. An error fails that dial; neither the password nor
	// the token ever appears in an error this package returns.
	Password func(ctx context.Context) (string, error)
	// PeekAfterIdle is how long a connection must have gone unchecked (by
	// IsValid, which the pool calls before each loan and after each
	// release, so: how long it sat idle) before IsValid peeks at its
	// socket for a close by the server: a connection checked a moment ago
	// cannot have been closed since in a way that the retry of With does
	// not cover, and the peek costs a system call. While the source has
	// lost a connection to the server in the last second, every check
	// peeks. Default (zero) 1 second; negative: every check peeks.
	PeekAfterIdle time.Duration
	// NoShare keeps Register from sharing this source's connections with
	// the other sources of its server on a pool.Budget (see
	// SharedFactory): its connections are dialled with every parameter of
	// its DSN and never serve another source.
	NoShare bool
}

// errEmptyDSN is FactoryFromDSN's error for an empty DSN without
// Options.EnvDefaults.
var errEmptyDSN = errors.New("the DSN is empty; give one, or set Options.EnvDefaults to use libpq's PG* environment variables and defaults")

// Conn is one PostgreSQL connection managed by a pool.
type Conn struct {
	conn    *pgx.Conn
	opts    Options
	session *session // what the borrower did; nil unless ResetSession
	// resets counts the round trips Reset has made, for tests.
	resets int
	peek   *peeker // IsValid's look at the socket
	// checkedAt is when IsValid last ran (on monotonicNow's clock): the
	// peek is due once the connection has gone PeekAfterIdle unchecked.
	checkedAt int64
	// health is what the connections of its source know of the server:
	// when one was last found closed.
	health *health
	// gen is health.gen when the connection was dialled.
	gen uint64
	// bind is the source's run-time parameters when the connection belongs
	// to a share group (SharedFactory): applied at dial, again after each
	// reset, and replaced by a move. Nil otherwise.
	bind *binding
}

// Conn returns the pgx connection. It is valid only while the pool
// connection is held.
func (c *Conn) Conn() *pgx.Conn { return c.conn }

// Ping checks the connection with an empty query.
func (c *Conn) Ping(ctx context.Context) error { return c.conn.Ping(ctx) }

// IsValid reports whether the connection is open, idle (no query in
// flight), outside any transaction, and not closed by the server. The
// pool asks before every loan and after every release. A backend the
// server has ended (pg_terminate_backend, a restart, an idle killer)
// leaves its FATAL message and its FIN in the socket: a non-blocking peek
// at the socket (one system call, nothing consumed) finds them, so the
// connection is closed instead of lent. An idle connection with anything
// unprompted to read (a NOTIFY for a LISTEN the borrower left behind
// included) is closed too. The peek runs on a connection unchecked for
// Options.PeekAfterIdle, and on every connection of a source that has
// just lost one.
func (c *Conn) IsValid() bool {
	pc := c.conn.PgConn()
	now := monotonicNow()
	if pc.IsClosed() {
		c.health.lost(now)
		return false
	}
	if pc.IsBusy() || pc.TxStatus() != 'I' {
		return false
	}
	if c.health.writable && pc.ParameterStatus("in_hot_standby") == "on" {
		return false // the server is a standby now (PostgreSQL 14 and later report it)
	}
	due := now-c.checkedAt >= c.health.peekAfter || c.health.suspect(now)
	c.checkedAt = now
	if !peekOn || !due || c.peek.ok() {
		return true
	}
	c.health.lost(now)
	return false
}

// health is shared by the connections of one source: when one of them
// was last found closed by the server, so that the others peek at their
// sockets for a while (a restart or a failover closes them all).
type health struct {
	peekAfter int64        // Options.PeekAfterIdle, in nanoseconds
	lostAt    atomic.Int64 // monotonicNow when a connection was last found closed; 0: never
	// writable is set when the DSN asks for a server that takes writes:
	// target_session_attrs=read-write, or a single host with none given.
	writable bool
	// gen counts the resets With made after a read-only failure; a
	// connection dialled in generation g resets its source only while gen
	// is still g, so that one failover resets the source once.
	gen atomic.Uint64
}

// suspectFor is how long after a connection of the source was found
// closed every check of its connections peeks.
const suspectFor = int64(time.Second)

func newHealth(cfg *pgx.ConnConfig, opts Options) *health {
	d := opts.PeekAfterIdle
	switch {
	case d == 0:
		d = time.Second
	case d < 0:
		d = 0
	}
	return &health{peekAfter: int64(d), writable: wantsWritable(cfg)}
}

// wantsWritable reports whether cfg asks for a server that takes writes:
// target_session_attrs=read-write, or one host and no target_session_attrs
// (a single server is expected to be the primary).
func wantsWritable(cfg *pgx.ConnConfig) bool {
	if cfg.ValidateConnect == nil {
		for _, f := range cfg.Fallbacks { // sslmode=prefer adds one for the same host
			if f.Host != cfg.Host || f.Port != cfg.Port {
				return false
			}
		}
		return true
	}
	return reflect.ValueOf(cfg.ValidateConnect).Pointer() ==
		reflect.ValueOf(pgconn.ValidateConnectFunc(pgconn.ValidateConnectTargetSessionAttrsReadWrite)).Pointer()
}

// readOnly reports whether err is PostgreSQL's "cannot execute ... in a
// read-only transaction" (SQLSTATE 25006), as a standby answers a write.
func readOnly(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "25006"
}

func (h *health) lost(now int64) { h.lostAt.Store(now) }

func (h *health) suspect(now int64) bool {
	at := h.lostAt.Load()
	return at != 0 && now-at < suspectFor
}

// epoch is the origin of monotonicNow.
var epoch = time.Now()

// monotonicNow is the monotonic clock in nanoseconds since epoch, never 0
// for a reading taken after it.
func monotonicNow() int64 { return int64(time.Since(epoch)) + 1 }

// peekOn is false only in the benchmark that measures the peek.
var peekOn = true

// Reset clears what a borrower left behind, as chosen by Options.Reset.
// It must not be called while the connection is lent.
func (c *Conn) Reset(ctx context.Context) error {
	pc := c.conn.PgConn()
	if pc.IsClosed() || pc.IsBusy() {
		if pc.IsClosed() { // the other connections of its source peek for a while
			c.health.lost(monotonicNow())
		}
		return errors.New("postgres: connection closed or busy")
	}
	inTx := pc.TxStatus() != 'I'
	switch {
	case c.opts.Reset == ResetAlways:
		if inTx {
			if err := c.exec(ctx, "ROLLBACK"); err != nil {
				return fmt.Errorf("postgres: reset: rollback: %w", err)
			}
		}
		if err := c.conn.DeallocateAll(ctx); err != nil {
			return fmt.Errorf("postgres: reset: deallocate: %w", err)
		}
		c.resets++
		if err := c.exec(ctx, "DISCARD ALL"); err != nil {
			return fmt.Errorf("postgres: reset: discard all: %w", err)
		}
		if c.bind != nil && c.bind.sql != "" {
			if err := c.exec(ctx, c.bind.sql); err != nil {
				return fmt.Errorf("postgres: reset: bind: %w", err)
			}
		}
		return nil
	case c.opts.Reset == ResetTransaction || c.session.clean():
		if inTx {
			if err := c.exec(ctx, "ROLLBACK"); err != nil {
				return fmt.Errorf("postgres: reset: rollback: %w", err)
			}
		}
		return nil
	}
	sql := resetSQL
	if inTx {
		sql = "ROLLBACK; " + sql
	}
	if c.bind != nil && c.bind.sql != "" {
		sql += "; " + c.bind.sql // RESET ALL took the source's own settings too
	}
	if err := c.exec(ctx, sql); err != nil {
		return fmt.Errorf("postgres: reset: %w", err)
	}
	if c.session.prepared {
		if err := c.conn.DeallocateAll(ctx); err != nil {
			return fmt.Errorf("postgres: reset: deallocate: %w", err)
		}
		c.resets++
	}
	c.session.forget()
	return nil
}

// NeedsReset implements pool.ResetChecker: it reports, without I/O,
// whether Reset has anything to do, so that the pool skips Reset (and the
// timer that bounds it) after plain queries.
func (c *Conn) NeedsReset() bool {
	pc := c.conn.PgConn()
	switch {
	case pc.IsClosed() || pc.IsBusy() || pc.TxStatus() != 'I':
		return true
	case c.opts.Reset == ResetAlways:
		return true
	case c.opts.Reset == ResetTransaction:
		return false
	}
	return !c.session.clean()
}

// exec sends sql (one or more statements) in one round trip, outside
// pgx's tracers.
func (c *Conn) exec(ctx context.Context, sql string) error {
	c.resets++
	_, err := c.conn.PgConn().Exec(ctx, sql).ReadAll()
	return err
}

// Close closes the connection, sending Terminate within CloseTimeout.
func (c *Conn) Close() error {
	d := c.opts.CloseTimeout
	if d <= 0 {
		d = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return c.conn.Close(ctx)
}

// Factory returns a pool.Factory that dials cfg. cfg is copied for each
// dial and not modified.
func Factory(cfg *pgx.ConnConfig, opts Options) pool.Factory[*Conn] {
	return factory(cfg, opts, nil)
}

// factory dials cfg; with a binding (SharedFactory), it applies the
// source's parameters after the handshake.
func factory(cfg *pgx.ConnConfig, opts Options, b *binding) pool.Factory[*Conn] {
	password := cfg.Password
	h := newHealth(cfg, opts)
	return func(ctx context.Context) (*Conn, error) {
		d := opts.ConnectTimeout
		if d <= 0 {
			d = 10 * time.Second
		}
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		dialCfg := cfg.Copy()
		pw := password
		if opts.Password != nil {
			var err error
			if pw, err = opts.Password(ctx); err != nil {
				return nil, redact(redact(fmt.Errorf("postgres: password for %s@%s:%d/%s: %w",
					cfg.User, cfg.Host, cfg.Port, cfg.Database, err), pw), password)
			}
			if pw == "" {
				return nil, fmt.Errorf("postgres: password for %s@%s:%d/%s: Options.Password returned an empty password",
					cfg.User, cfg.Host, cfg.Port, cfg.Database)
			}
			dialCfg.Password = pw
		}
		var s *session
		if opts.Reset == ResetSession || b != nil { // a move swaps in the new source's tracer
			s = &session{next: dialCfg.Tracer}
			dialCfg.Tracer = s
		}
		conn, err := pgx.ConnectConfig(ctx, dialCfg)
		if err != nil {
			return nil, redact(redact(notReady(atCapacity(fmt.Errorf("postgres: connect to %s@%s:%d/%s: %w",
				cfg.User, cfg.Host, cfg.Port, cfg.Database, err))), pw), password)
		}
		c := &Conn{conn: conn, opts: opts, session: s, peek: newPeeker(conn.PgConn().Conn()), bind: b,
			health: h, checkedAt: monotonicNow(), gen: h.gen.Load()}
		if b != nil && b.sql != "" {
			if err := c.exec(ctx, b.sql); err != nil {
				_ = conn.Close(ctx)
				return nil, fmt.Errorf("postgres: connect to %s@%s:%d/%s: set the DSN's parameters: %w",
					cfg.User, cfg.Host, cfg.Port, cfg.Database, err)
			}
			c.resets = 0
		}
		return c, nil
	}
}

// ParseDSN parses a PostgreSQL URL or keyword/value DSN, as pgx does. The
// error never contains the password.
func ParseDSN(dsn string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, redact(fmt.Errorf("postgres: parse DSN: %w", err), passwordIn(dsn))
	}
	return cfg, nil
}

// FactoryFromDSN parses dsn and returns a Factory for it. An empty (or
// blank) dsn is an error unless opts.EnvDefaults is set.
func FactoryFromDSN(dsn string, opts Options) (pool.Factory[*Conn], error) {
	if strings.TrimSpace(dsn) == "" && !opts.EnvDefaults {
		return nil, fmt.Errorf("postgres: %w", errEmptyDSN)
	}
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	return Factory(cfg, opts), nil
}

// Dial opens one connection outside any pool, with default Options.
func Dial(ctx context.Context, dsn string) (*Conn, error) {
	f, err := FactoryFromDSN(dsn, Options{})
	if err != nil {
		return nil, err
	}
	return f(ctx)
}

// capacityError is a connect error that says the server is full: it
// matches pool.ErrCapacity as well as the error it wraps.
type capacityError struct{ err error }

func (e *capacityError) Error() string   { return e.err.Error() }
func (e *capacityError) Unwrap() []error { return []error{e.err, pool.ErrCapacity} }

// atCapacity marks err as pool.ErrCapacity when the server refused the
// connection for its connection limit: SQLSTATE 53300
// (too_many_connections: max_connections, or a role's or a database's
// CONNECTION LIMIT) or 53400 (configuration_limit_exceeded), or
// PgBouncer's "no more connections allowed" (its max_client_conn), which
// it sends with a protocol-violation code.
func atCapacity(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err
	}
	switch {
	case pe.Code == "53300" || pe.Code == "53400",
		pe.Code == "08P01" && strings.HasPrefix(pe.Message, "no more connections allowed"):
		return &capacityError{err}
	}
	return err
}

// notReadyError is a connect error from a server that answered but is
// changing: it matches pool.ErrNotReady as well as the error it wraps.
type notReadyError struct{ err error }

func (e *notReadyError) Error() string   { return e.err.Error() }
func (e *notReadyError) Unwrap() []error { return []error{e.err, pool.ErrNotReady} }

// notReady marks err as pool.ErrNotReady when a server answered the dial
// and said it cannot serve it yet, as in a failover or a restart: on any
// of the DSN's hosts, SQLSTATE 57P03 (cannot_connect_now: starting up,
// shutting down, in recovery) or a standby refused for
// target_session_attrs=read-write (pgconn.ErrReadOnlyConnection). A host
// that refused the TCP connection says nothing of the kind.
func notReady(err error) error {
	if errors.Is(err, pool.ErrCapacity) {
		return err
	}
	if errors.Is(err, pgconn.ErrReadOnlyConnection) || anyPgError(err, "57P03") {
		return &notReadyError{err}
	}
	return err
}

// anyPgError reports whether err, or any error it wraps (a multi-host
// dial joins one per host), is a *pgconn.PgError with the given code.
func anyPgError(err error, code string) bool {
	switch e := err.(type) {
	case nil:
		return false
	case *pgconn.PgError:
		if e.Code == code {
			return true
		}
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		return anyPgError(u.Unwrap(), code)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if anyPgError(e, code) {
				return true
			}
		}
	}
	return false
}

// redactedError hides a password in the text of the error it wraps, and
// still unwraps to it for errors.Is and errors.As.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

func redact(err error, password string) error {
	if password == "" {
		return err
	}
	return &redactedError{msg: strings.ReplaceAll(err.Error(), password, "xxxxx"), err: err}
}

// passwordIn finds the password of a URL or keyword/value DSN, for
// redaction only.
func passwordIn(dsn string) string {
	if rest, ok := strings.CutPrefix(dsn, "postgres://"); ok || strings.HasPrefix(dsn, "postgresql://") {
		if !ok {
			rest = strings.TrimPrefix(dsn, "postgresql://")
		}
		userinfo, _, found := strings.Cut(rest, "@")
		if !found {
			return ""
		}
		_, pw, _ := strings.Cut(userinfo, ":")
		return pw
	}
	for _, f := range strings.Fields(dsn) {
		if v, ok := strings.CutPrefix(f, "password="); ok {
			return strings.Trim(v, "'")
		}
	}
	return ""
}
