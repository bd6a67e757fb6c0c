package pool_test

import (
	"errors"
	"testing"
	"time"

	"github.com/deepanalyze/pool"
	"github.com/stretchr/testify/assert"
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
