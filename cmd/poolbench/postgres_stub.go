package main

import (
	"context"
	"errors"
)

// postgresBackend is replaced once the postgres adapter exists.
func postgresBackend(context.Context, options) (*backend, error) {
	return nil, errors.New("-dsn: the PostgreSQL adapter is not built yet")
}
