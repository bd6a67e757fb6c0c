package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/deepanalyze/pool"
	"github.com/deepanalyze/pool/azblob"
)

// Config is the service's configuration file.
type Config struct {
	Addr string `json:"addr"`
	// Budgets are connection budgets shared by the sources that name
	// them, by name: for sources on one server, so that together they
	// never open more than its limit.
	Budgets map[string]BudgetConfig `json:"budgets"`
	Sources []SourceConfig          `json:"sources"`
}

// BudgetConfig is one shared budget.
type BudgetConfig struct {
	Limit int `json:"limit"`
}

// SourceConfig registers one data source. DSN, and CACert, may name
// environment variables as ${VAR}; each must be set and non-empty.
type SourceConfig struct {
	ID string `json:"id"`
	// Kind is "postgres" (the default) or "azblob".
	Kind string `json:"kind"`
	// DSN is a PostgreSQL URL or keyword/value string, or for azblob an
	// Azure Storage connection string.
	DSN string `json:"dsn"`
	// Container is the Blob container (azblob only); CreateContainer
	// creates it at start if it is missing (for development against
	// Azurite); CACert is a PEM file of a certificate authority to trust
	// besides the system's (Azurite's throwaway certificate).
	Container       string `json:"container"`
	CreateContainer bool   `json:"create_container"`
	CACert          string `json:"ca_cert"`
	// Auth "entra" authenticates with Microsoft Entra ID, through
	// azidentity's DefaultAzureCredential (a managed identity, a workload
	// identity, environment variables or az login): for PostgreSQL each new
	// connection's password is an access token (Azure Database for
	// PostgreSQL), and the DSN has no password; for azblob DSN is then the
	// account's blob endpoint, such as
	// https://account.blob.core.windows.net, not a connection string.
	// Empty (the default): the credentials are in the DSN.
	Auth string `json:"auth"`
	// MinSize and MaxSize default to the pool's defaults when absent;
	// "min_size": 0 keeps no warm connection.
	MinSize        *int   `json:"min_size"`
	MaxSize        *int   `json:"max_size"`
	AcquireTimeout string `json:"acquire_timeout"`
	// LeakThreshold, a duration ("30s"), logs a loan held longer, and
	// makes /holders and an exhausted pool's errors name where the
	// connections in use were acquired (see pool.Config).
	LeakThreshold string `json:"leak_threshold"`
	// Budget names one of the config's budgets, shared with the other
	// sources that name it; Weight is this source's share of it when
	// sources compete (default 1).
	Budget string `json:"budget"`
	Weight int    `json:"weight"`
	// Adaptive keeps open what the source's demand needs and hands the
	// rest back within seconds; ShedHopeless fails at once a request
	// whose deadline would pass before its turn (see pool.Config).
	Adaptive     bool `json:"adaptive"`
	ShedHopeless bool `json:"shed_hopeless"`
	// Settings are run-time parameters of the source's sessions, added to
	// its DSN (postgres only): search_path for a schema per tenant,
	// application_name, a setting read by row-level security. Sources on
	// one budget whose DSNs differ only in such parameters share
	// connections: one released by a tenant is reset and bound to the next.
	Settings map[string]string `json:"settings"`
}

// LoadConfig reads and checks a configuration file.
func LoadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	if len(c.Sources) == 0 {
		return c, fmt.Errorf("%s: no sources", path)
	}
	for name, b := range c.Budgets {
		if _, err := pool.NewBudget(b.Limit); err != nil {
			return c, fmt.Errorf("%s: budget %q: limit %d: it must be at least 1", path, name, b.Limit)
		}
	}
	for _, s := range c.Sources {
		if err := routable(s.ID); err != nil {
			return c, fmt.Errorf("%s: source %s: %w", path, quoted(s.ID), err)
		}
		if _, ok := c.Budgets[s.Budget]; s.Budget != "" && !ok {
			return c, fmt.Errorf("%s: source %q: budget %q is not in budgets", path, s.ID, s.Budget)
		}
		if err := s.checkKind(); err != nil {
			return c, fmt.Errorf("%s: source %q: %w", path, s.ID, err)
		}
		if _, err := s.dsn(); err != nil {
			return c, fmt.Errorf("%s: source %q: %w", path, s.ID, err)
		}
		if _, err := s.poolConfig(); err != nil {
			return c, fmt.Errorf("%s: source %q: %w", path, s.ID, err)
		}
	}
	return c, nil
}

// routable reports why id cannot be a path segment of the service's URLs
// (/sources/{id}/...), or nil.
func routable(id string) error {
	switch {
	case id == "":
		return errors.New("the id is empty")
	case id == "." || id == "..":
		return errors.New("the id cannot be . or .., which a URL path resolves away")
	case strings.ContainsAny(id, "/?#%"):
		return errors.New("the id cannot hold /, ?, # or %: it is a segment of the URL path")
	}
	return nil
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// The kinds of source.
const (
	kindPostgres = "postgres"
	kindBlob     = "azblob"
)

func (s SourceConfig) kind() string {
	if s.Kind == "" {
		return kindPostgres
	}
	return s.Kind
}

func (s SourceConfig) checkKind() error {
	switch s.kind() {
	case kindPostgres:
		if s.Container != "" || s.CreateContainer || s.CACert != "" {
			return errors.New("container, create_container and ca_cert are for kind azblob")
		}
		for k := range s.Settings {
			if !settingName.MatchString(k) {
				return fmt.Errorf("settings: %s is not the name of a run-time parameter", quoted(k))
			}
		}
	case kindBlob:
		if len(s.Settings) > 0 {
			return errors.New("settings are for kind postgres")
		}
		if s.Container == "" {
			return errors.New("kind azblob needs a container")
		}
		if _, err := expand("ca_cert", s.CACert); err != nil && s.CACert != "" {
			return err
		}
	default:
		return fmt.Errorf("kind %q: use %q or %q", s.Kind, kindPostgres, kindBlob)
	}
	if s.Auth != "" && s.Auth != authEntra {
		return fmt.Errorf("auth %q: use %q, or leave it out for the DSN's credentials", s.Auth, authEntra)
	}
	if s.Auth == authEntra && s.CreateContainer {
		return errors.New("create_container needs the account key of a connection string; it is not for auth entra")
	}
	return nil
}

// dsn expands the ${VAR} references of the source's DSN. A reference to a
// variable that is unset or empty, or an empty DSN, is an error naming it.
func (s SourceConfig) dsn() (string, error) {
	dsn, err := expand("dsn", s.DSN)
	if err != nil || len(s.Settings) == 0 {
		return dsn, err
	}
	return withSettings(dsn, s.Settings)
}

// settingName is what a run-time parameter's name may be: letters, digits,
// _ and . (for a custom setting such as app.tenant).
var settingName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)

// withSettings adds settings to a PostgreSQL DSN, in a URL's query or as
// keyword/value pairs, replacing any the DSN gives.
func withSettings(dsn string, settings map[string]string) (string, error) {
	keys := slices.Sorted(maps.Keys(settings))
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil { // url's error quotes the DSN, password and all
			return "", errors.New("dsn: not a valid URL")
		}
		q := u.Query()
		for _, k := range keys {
			q.Set(k, settings[k])
		}
		// pgx reads a + in the query as itself, not as a space.
		u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
		return u.String(), nil
	}
	var b strings.Builder
	b.WriteString(dsn)
	quote := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s='%s'", k, quote.Replace(settings[k]))
	}
	return b.String(), nil
}

func expand(field, v string) (string, error) {
	for _, m := range envRef.FindAllStringSubmatch(v, -1) {
		if os.Getenv(m[1]) == "" {
			return "", fmt.Errorf("%s: environment variable %s is not set", field, m[1])
		}
	}
	v = envRef.ReplaceAllStringFunc(v, func(ref string) string {
		return os.Getenv(envRef.FindStringSubmatch(ref)[1])
	})
	if v == "" {
		return "", errors.New(field + " is empty")
	}
	return v, nil
}

// blobOptions turns an azblob source's settings into azblob.Options.
func (s SourceConfig) blobOptions(dsn string) (azblob.Options, error) {
	opts := azblob.Options{ConnectionString: dsn, Container: s.Container}
	if s.Auth == authEntra {
		cred, err := newCredential()
		if err != nil {
			return opts, fmt.Errorf("auth entra: %w", err)
		}
		opts = azblob.Options{ContainerURL: strings.TrimSuffix(dsn, "/") + "/" + url.PathEscape(s.Container), Credential: cred}
	}
	if s.CACert == "" {
		return opts, nil
	}
	file, err := expand("ca_cert", s.CACert)
	if err != nil {
		return opts, err
	}
	if opts.TLSConfig, err = azblob.TrustCA(file); err != nil {
		return opts, fmt.Errorf("ca_cert: %w", err)
	}
	return opts, nil
}

// poolConfig turns a source's settings into a pool.Config.
func (s SourceConfig) poolConfig() (pool.Config, error) {
	cfg := pool.DefaultConfig()
	cfg.Logger = slog.Default()
	if s.MaxSize != nil {
		cfg.MaxSize = *s.MaxSize
	}
	if s.MinSize != nil {
		cfg.MinSize = *s.MinSize
	}
	if s.AcquireTimeout != "" {
		d, err := time.ParseDuration(s.AcquireTimeout)
		if err != nil {
			return cfg, fmt.Errorf("acquire_timeout: %w", err)
		}
		cfg.AcquireTimeout = d
	}
	if s.LeakThreshold != "" {
		d, err := time.ParseDuration(s.LeakThreshold)
		if err != nil {
			return cfg, fmt.Errorf("leak_threshold: %w", err)
		}
		cfg.LeakThreshold = d
	}
	cfg.Weight = s.Weight
	cfg.Adaptive = s.Adaptive
	cfg.ShedHopeless = s.ShedHopeless
	return cfg, cfg.Validate()
}
