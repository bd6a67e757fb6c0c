package postgres

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/deepanalyze/pool"
)

// SharedFactory returns a Factory for cfg whose connections other sources
// of the same server can use, and the pool.Share that lets them: give both
// to a pool on a pool.Budget (Register does so by itself for a source on
// a Budget, unless Options.NoShare is set).
//
// Sources share connections when they differ only in run-time parameters:
// the same host(s) and port(s), database, user, TLS settings,
// authentication (the DSN's password, or the same Options.Password
// function), ConnConfig settings and Options. A connection is dialled
// without the run-time parameters of the DSN (application_name,
// search_path, options=-c ..., any other), and they are applied with
// set_config as session defaults, in the round trip after the handshake;
// Reset applies them again after it clears the session. When a connection
// moves to another source of the group, Share.Bind clears everything of
// the session, whatever the session tracker said (an open transaction,
// settings, role and authorization, temporary tables, advisory locks,
// LISTEN, cursors, sequence state, prepared statements and pgx's
// statement and description caches), and applies that source's
// parameters, in two round trips.
//
// A DSN whose options hold anything but -c settings cannot be shared: its
// Share is the zero Share, and its Factory is Factory's.
func SharedFactory(cfg *pgx.ConnConfig, opts Options) (pool.Factory[*Conn], pool.Share) {
	b, err := newBinding(cfg)
	if err != nil {
		return Factory(cfg, opts), pool.Share{}
	}
	common := cfg.Copy()
	common.RuntimeParams = map[string]string{}
	dial := factory(common, opts, b)
	return dial, pool.Share{
		Group: groupKey(cfg, opts),
		Bind: func(ctx context.Context, c pool.Connector) error {
			pc, ok := c.(*Conn)
			if !ok {
				return fmt.Errorf("postgres: bind: a %T is not a PostgreSQL connection", c)
			}
			return pc.rebind(ctx, b, opts, cfg.Tracer)
		},
	}
}

// binding is what makes a connection of a share group serve one source:
// its run-time parameters, applied with set_config.
type binding struct {
	sql string // "SELECT set_config(...), ..." or empty
}

// newBinding reads cfg's run-time parameters, the -c settings of an
// options parameter included; any other option is an error.
func newBinding(cfg *pgx.ConnConfig) (*binding, error) {
	params := map[string]string{}
	for k, v := range cfg.RuntimeParams {
		if k != "options" {
			params[k] = v
			continue
		}
		settings, err := parseOptions(v)
		if err != nil {
			return nil, err
		}
		maps.Copy(params, settings)
	}
	if len(params) == 0 {
		return &binding{}, nil
	}
	var calls []string
	for _, k := range slices.Sorted(maps.Keys(params)) {
		calls = append(calls, "pg_catalog.set_config("+quoteLiteral(k)+", "+quoteLiteral(params[k])+", false)")
	}
	return &binding{sql: "SELECT " + strings.Join(calls, ", ")}, nil
}

// parseOptions reads the settings of a libpq options string: words
// separated by spaces (a backslash escapes the next character), each
// "-c name=value", "-cname=value" or "--name=value".
func parseOptions(s string) (map[string]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	out := map[string]string{}
	for i := 0; i < len(words); i++ {
		var kv string
		switch word := words[i]; {
		case word == "-c" && i+1 < len(words):
			i++
			kv = words[i]
		case strings.HasPrefix(word, "-c"):
			kv = word[2:]
		case strings.HasPrefix(word, "--"):
			kv = word[2:]
		default:
			return nil, fmt.Errorf("postgres: options %q: only -c settings can be shared", s)
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("postgres: options: %q is not name=value", kv)
		}
		out[strings.ReplaceAll(k, "-", "_")] = v
	}
	return out, nil
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// groupSecret keys the hash of a password in a group's key, so that a
// key (which Pool.Config shows) reveals nothing of the password.
var groupSecret = func() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}()

// groupKey is what the connections of sources that may share them have in
// common; it never contains the password.
func groupKey(cfg *pgx.ConnConfig, opts Options) string {
	mac := hmac.New(sha256.New, groupSecret)
	mac.Write([]byte(cfg.Password))
	var k strings.Builder
	fmt.Fprintf(&k, "postgres %s@%s:%d/%s tls=%s", cfg.User, cfg.Host, cfg.Port, cfg.Database, tlsKey(cfg.TLSConfig != nil, cfg.SSLNegotiation))
	for _, f := range cfg.Fallbacks {
		fmt.Fprintf(&k, " or %s:%d tls=%t", f.Host, f.Port, f.TLSConfig != nil)
	}
	if cfg.TLSConfig != nil {
		fmt.Fprintf(&k, " servername=%s verify=%t", cfg.TLSConfig.ServerName, !cfg.TLSConfig.InsecureSkipVerify)
	}
	fmt.Fprintf(&k, " password=%s", hex.EncodeToString(mac.Sum(nil))[:16])
	if opts.Password != nil {
		fmt.Fprintf(&k, " provider=%x", reflect.ValueOf(opts.Password).Pointer())
	}
	fmt.Fprintf(&k, " exec=%v stmtcache=%d desccache=%d reset=%d",
		cfg.DefaultQueryExecMode, cfg.StatementCacheCapacity, cfg.DescriptionCacheCapacity, opts.Reset)
	for _, fn := range []any{cfg.DialFunc, cfg.LookupFunc, cfg.ValidateConnect, cfg.AfterConnect, cfg.OnNotice, cfg.OnNotification, cfg.AfterNetConnect} {
		if v := reflect.ValueOf(fn); v.IsValid() && !v.IsNil() {
			fmt.Fprintf(&k, " fn=%x", v.Pointer())
		}
	}
	return k.String()
}

func tlsKey(on bool, negotiation string) string {
	if !on {
		return "off"
	}
	return "on/" + negotiation
}

// rebind makes c, which another source of its group lent last, serve the
// source of b, opts and tracer: the whole session is cleared, whatever
// the tracker says, then b's parameters are applied.
func (c *Conn) rebind(ctx context.Context, b *binding, opts Options, tracer pgx.QueryTracer) error {
	pc := c.conn.PgConn()
	if pc.IsClosed() || pc.IsBusy() {
		return errors.New("postgres: bind: connection closed or busy")
	}
	sql := resetSQL
	if pc.TxStatus() != 'I' {
		sql = "ROLLBACK; " + sql
	}
	if b.sql != "" {
		sql += "; " + b.sql
	}
	if err := c.exec(ctx, sql); err != nil {
		return fmt.Errorf("postgres: bind: %w", err)
	}
	// pgx's statement and description caches, and its statements
	// prepared by name, describe the last source's session: they must
	// never decide what this one reads. DeallocateAll forgets them here
	// and on the server.
	if err := c.conn.DeallocateAll(ctx); err != nil {
		return fmt.Errorf("postgres: bind: deallocate: %w", err)
	}
	c.resets++
	c.opts, c.bind = opts, b
	if c.session != nil {
		c.session.next = tracer
		c.session.forget()
	}
	return nil
}
