package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/deepanalyze/pool/azblob"
	"github.com/deepanalyze/pool/azblob/blobload"
)

// blobTarget reads the Azure Storage account from the environment, as
// .ci/services.sh exports it for Azurite.
func blobTarget() (blobload.Target, error) {
	cs := os.Getenv("AZURITE_CONNECTION_STRING")
	if cs == "" {
		return blobload.Target{}, errors.New(`-blob needs AZURITE_CONNECTION_STRING (and AZURITE_CA_CERT for Azurite's certificate); eval "$(bash .ci/services.sh)" from the repository root sets them`)
	}
	t := blobload.Target{ConnectionString: cs, Container: "poolbench"}
	if ca := os.Getenv("AZURITE_CA_CERT"); ca != "" {
		cfg, err := azblob.TrustCA(ca)
		if err != nil {
			return t, fmt.Errorf("AZURITE_CA_CERT: %w", err)
		}
		t.TLS = cfg
	}
	return t, nil
}

// runBlob drives Blob Storage at each concurrency level through the
// pooled connector, one shared SDK client, and a new SDK client per
// request, for both workloads, and prints one table.
func runBlob(ctx context.Context, o options, stdout, stderr io.Writer) error {
	t, err := blobTarget()
	if err != nil {
		return err
	}
	want, err := blobload.Prepare(ctx, t)
	if err != nil {
		return fmt.Errorf("prepare container %q: %w", t.Container, err)
	}
	fmt.Fprintf(stdout, "Blob Storage from $AZURITE_CONNECTION_STRING, container %q; pool MaxSize %d, %v per run\n\n", t.Container, o.poolSize, o.duration)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tclients\tclient\treq/s\tp50\tp99\tpeak conns\t")
	for _, w := range []blobload.Workload{blobload.Read, blobload.List} {
		for _, clients := range o.levels {
			for _, c := range blobload.Contenders {
				if err := ctx.Err(); err != nil {
					return err
				}
				r, err := blobload.Run(ctx, t, c, w, clients, o.poolSize, 0, o.duration, want)
				if err != nil {
					return fmt.Errorf("%s, %d clients, %s: %w", w, clients, c, err)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%.0f\t%s\t%s\t%d\t\n", w, clients, c, r.PerSecond, round(r.P50), round(r.P99), r.PeakConns)
				fmt.Fprintf(stderr, "done: %s, %d clients, %s\n", w, clients, c)
			}
		}
	}
	return tw.Flush()
}
