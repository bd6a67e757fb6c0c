// Package postgres connects pool to PostgreSQL through jackc/pgx v5: Conn
// wraps one *pgx.Conn and implements pool.Connector, pool.Validator and
// pool.Resetter, and Factory dials them.
//
// No error this package returns contains the password of the DSN or
// ConnConfig it was given.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/deepanalyze/pool"
)

// ResetMode says how much session state Reset clears when a connection is
// released.
type ResetMode int

const (
	// ResetSession (the default) rolls back an open or failed transaction,
	// forgets pgx's prepared statements and runs DISCARD ALL, which clears
	// session settings, temporary tables, server-side prepared statements,
	// advisory locks and LISTEN registrations: the next borrower sees a
	// fresh session. It costs two round trips per release.
	ResetSession ResetMode = iota
	// ResetTransaction only rolls back an open or failed transaction (no
	// round trip when there is none), as pgxpool does. Session settings and
	// temporary tables then carry over between borrowers.
	ResetTransaction
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
}

// Conn is one PostgreSQL connection managed by a pool.
type Conn struct {
	conn *pgx.Conn
	opts Options
}

// Conn returns the pgx connection. It is valid only while the pool
// connection is held.
func (c *Conn) Conn() *pgx.Conn { return c.conn }

// Ping checks the connection with an empty query.
func (c *Conn) Ping(ctx context.Context) error { return c.conn.Ping(ctx) }

// IsValid reports whether the connection is open, idle (no query in
// flight) and outside any transaction. A connection the server has killed
// (admin shutdown, pg_terminate_backend) is closed by pgx on the first
// failed read, and so reported invalid.
func (c *Conn) IsValid() bool {
	pc := c.conn.PgConn()
	return !pc.IsClosed() && !pc.IsBusy() && pc.TxStatus() == 'I'
}

// Reset clears what a borrower left behind, as chosen by Options.Reset.
func (c *Conn) Reset(ctx context.Context) error {
	pc := c.conn.PgConn()
	if pc.IsClosed() || pc.IsBusy() {
		return errors.New("postgres: connection closed or busy")
	}
	if pc.TxStatus() != 'I' {
		if _, err := pc.Exec(ctx, "ROLLBACK").ReadAll(); err != nil {
			return fmt.Errorf("postgres: reset: rollback: %w", err)
		}
	}
	if c.opts.Reset == ResetTransaction {
		return nil
	}
	if err := c.conn.DeallocateAll(ctx); err != nil {
		return fmt.Errorf("postgres: reset: deallocate: %w", err)
	}
	if _, err := pc.Exec(ctx, "DISCARD ALL").ReadAll(); err != nil {
		return fmt.Errorf("postgres: reset: discard all: %w", err)
	}
	return nil
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
	password := cfg.Password
	return func(ctx context.Context) (*Conn, error) {
		d := opts.ConnectTimeout
		if d <= 0 {
			d = 10 * time.Second
		}
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		conn, err := pgx.ConnectConfig(ctx, cfg.Copy())
		if err != nil {
			return nil, redact(fmt.Errorf("postgres: connect to %s@%s:%d/%s: %w",
				cfg.User, cfg.Host, cfg.Port, cfg.Database, err), password)
		}
		return &Conn{conn: conn, opts: opts}, nil
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

// FactoryFromDSN parses dsn and returns a Factory for it.
func FactoryFromDSN(dsn string, opts Options) (pool.Factory[*Conn], error) {
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
