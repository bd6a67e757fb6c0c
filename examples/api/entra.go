package main

import (
	"context"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/deepanalyze/pool/postgres"
)

const authEntra = "entra"

// postgresScope is the Entra ID scope of Azure Database for PostgreSQL's
// access tokens.
const postgresScope = "https://ossrdbms-aad.database.windows.net/.default"

// newCredential makes the Entra ID credential of the sources with auth
// "entra"; tests replace it.
var newCredential = func() (azcore.TokenCredential, error) {
	return azidentity.NewDefaultAzureCredential(nil)
}

// postgresOptions turns a PostgreSQL source's settings into
// postgres.Options: with auth "entra", each new connection's password is
// a fresh Entra ID access token.
func (s SourceConfig) postgresOptions() (postgres.Options, error) {
	if s.Auth != authEntra {
		return postgres.Options{}, nil
	}
	cred, err := newCredential()
	if err != nil {
		return postgres.Options{}, fmt.Errorf("auth entra: %w", err)
	}
	return postgres.Options{Password: func(ctx context.Context) (string, error) {
		tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{postgresScope}})
		if err != nil {
			return "", fmt.Errorf("entra token: %w", err)
		}
		return tok.Token, nil
	}}, nil
}
