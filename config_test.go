package pool_test

import (
	"context"
	"errors"
	"go/ast"
	"go/doc"
	"go/parser"
	"go/token"
	"math"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/deepanalyze/pool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDefaultConfig(t *testing.T) {
	cfg := pool.DefaultConfig()
	assert.Equal(t, 10, cfg.MaxSize)
	assert.Equal(t, 1, cfg.MinSize)
	assert.Equal(t, 5*time.Minute, cfg.MaxIdleTime)
	assert.Equal(t, 30*time.Second, cfg.AcquireTimeout)
	assert.Equal(t, time.Hour, cfg.MaxLifetime)
	assert.Equal(t, 60*time.Second, cfg.ReapInterval)
	assert.NoError(t, cfg.Validate())
}

func TestConfigValidateNamesBadField(t *testing.T) {
	tests := []struct {
		field string
		edit  func(*pool.Config)
	}{
		{"MaxSize", func(c *pool.Config) { c.MaxSize = 0 }},
		{"MinSize", func(c *pool.Config) { c.MinSize = -1 }},
		{"MinSize", func(c *pool.Config) { c.MinSize = 11 }},
		{"MaxIdleTime", func(c *pool.Config) { c.MaxIdleTime = -time.Second }},
		{"MaxLifetime", func(c *pool.Config) { c.MaxLifetime = -time.Second }},
		{"AcquireTimeout", func(c *pool.Config) { c.AcquireTimeout = -1 }},
		{"ReapInterval", func(c *pool.Config) { c.ReapInterval = -1 }},
		{"DialTimeout", func(c *pool.Config) { c.DialTimeout = -1 }},
		{"PingTimeout", func(c *pool.Config) { c.PingTimeout = -1 }},
		{"ResetTimeout", func(c *pool.Config) { c.ResetTimeout = -1 }},
	}
	for _, tt := range tests {
		cfg := pool.DefaultConfig()
		tt.edit(&cfg)
		err := cfg.Validate()
		if !errors.Is(err, pool.ErrInvalidConfig) {
			t.Errorf("%s: Validate() = %v, want ErrInvalidConfig", tt.field, err)
			continue
		}
		assert.Contains(t, err.Error(), tt.field)
		_, err = pool.New(newFakeSource(t).factory(), cfg)
		assert.ErrorIs(t, err, pool.ErrInvalidConfig, "New with bad %s", tt.field)
	}
	_, err := pool.New[*fakeConn](nil, pool.DefaultConfig())
	assert.ErrorIs(t, err, pool.ErrInvalidConfig, "New with nil factory")
	assert.ErrorIs(t, pool.Config{}.Validate(), pool.ErrInvalidConfig, "zero Config")
}

// Durations near math.MaxInt64 mean "never": added to the pool's clock
// they saturate instead of wrapping into the past. Before, a waiting
// Acquire timed out at once ("timed out after 2562047h"), every Ping failed
// at once and healthy connections were closed as broken, and the backoff
// overflowed.
func TestHugeDurationsMeanNever(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const forever = time.Duration(math.MaxInt64)
		src := newFakeSource(t)
		cfg := pool.DefaultConfig()
		cfg.MinSize, cfg.MaxSize = 0, 1
		cfg.AcquireTimeout = forever
		cfg.PingTimeout = forever
		cfg.PingAfterIdle = time.Nanosecond
		cfg.MaxLifetime = forever
		cfg.MaxIdleTime = forever
		cfg.ReapInterval = forever
		cfg.DialTimeout = forever
		cfg.ResetTimeout = forever
		cfg.LeakThreshold = forever
		cfg.DialBackoff = forever / 2
		cfg.DialBackoffMax = forever
		require.NoError(t, cfg.Validate())
		p := newTestPool(t, src, cfg)

		src.onPing = func(ctx context.Context, _ *fakeConn) error { return ctx.Err() }
		held, err := p.Acquire(bg)
		require.NoError(t, err)
		held.Release()
		time.Sleep(time.Hour)
		held, err = p.Acquire(bg) // pinged: its deadline is not in the past
		require.NoError(t, err)
		assert.EqualValues(t, 1, src.pings.Load())
		assert.Zero(t, p.Stats().ClosedBroken+p.Stats().ClosedLifetime)

		// A waiter is bounded by its own ctx only.
		ctx, cancel := context.WithTimeout(bg, time.Minute)
		defer cancel()
		start := time.Now()
		_, err = p.Acquire(ctx)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.NotErrorIs(t, err, pool.ErrAcquireTimeout)
		assert.Equal(t, time.Minute, time.Since(start))
		held.Release()

		// Failed dials back off for "ever" without overflowing.
		pc, err := p.Acquire(bg)
		require.NoError(t, err)
		pc.Discard()
		src.failDials(errors.New("connection refused"))
		for range 3 {
			_, err = p.Acquire(bg)
			require.ErrorIs(t, err, pool.ErrDial)
		}
		assert.True(t, p.Stats().Down)
	})
}

// What go doc shows of the package names no unexported function: a doc
// comment that does sends its reader to code they cannot call. Before,
// the errors' doc named newError. Only camelCase names are looked for, as
// plain words ("detail", "release") are English too.
func TestDocsNameNoUnexportedFunctions(t *testing.T) {
	fset := token.NewFileSet()
	matches, err := filepath.Glob("*.go")
	require.NoError(t, err)
	var files []*ast.File
	unexported := map[string]bool{}
	for _, name := range matches {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		require.NoError(t, err)
		files = append(files, f)
		for _, d := range f.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && !fn.Name.IsExported() && strings.ToLower(fn.Name.Name) != fn.Name.Name {
				unexported[fn.Name.Name] = true
			}
		}
	}
	require.NotEmpty(t, unexported)
	p, err := doc.NewFromFiles(fset, files, "github.com/deepanalyze/pool")
	require.NoError(t, err)
	texts := map[string]string{"package": p.Doc}
	values := func(vs []*doc.Value) {
		for _, v := range vs {
			texts[strings.Join(v.Names, ",")] = v.Doc
		}
	}
	funcs := func(fs []*doc.Func) {
		for _, f := range fs {
			texts[f.Recv+f.Name] = f.Doc
		}
	}
	values(p.Consts)
	values(p.Vars)
	funcs(p.Funcs)
	for _, ty := range p.Types {
		texts[ty.Name] = ty.Doc
		values(ty.Consts)
		values(ty.Vars)
		funcs(ty.Funcs)
		funcs(ty.Methods)
	}
	word := regexp.MustCompile(`\w+`)
	for where, text := range texts {
		for _, w := range word.FindAllString(text, -1) {
			assert.False(t, unexported[w], "the doc of %s names the unexported %s", where, w)
		}
	}
}
