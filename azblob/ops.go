package azblob

import (
	"context"
	"errors"
	"io"
	"iter"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/deepanalyze/pool"
)

// BlobInfo describes a blob, from a listing or from Properties.
type BlobInfo struct {
	Name         string
	Size         int64
	ContentType  string
	ETag         string
	LastModified time.Time
}

// Page is one page of a listing. Next is empty on the last page; pass it
// to ListPage to get the page after this one.
type Page struct {
	Blobs []BlobInfo
	Next  string
}

// ListPage lists at most max blobs (the service's limit, 5000, when max
// is 0 or above it) whose names start with prefix, in name order, from
// the marker a previous page returned ("" for the first page).
func (c *Conn) ListPage(ctx context.Context, prefix, marker string, max int) (Page, error) {
	opts := &container.ListBlobsFlatOptions{}
	if prefix != "" {
		opts.Prefix = &prefix
	}
	if marker != "" {
		opts.Marker = &marker
	}
	if max > 0 && max <= 5000 {
		n := int32(max)
		opts.MaxResults = &n
	}
	resp, err := c.client.NewListBlobsFlatPager(opts).NextPage(ctx)
	if err != nil {
		return Page{}, c.wrap("list", prefix, err)
	}
	var p Page
	if resp.NextMarker != nil {
		p.Next = *resp.NextMarker
	}
	if resp.Segment != nil {
		p.Blobs = make([]BlobInfo, 0, len(resp.Segment.BlobItems))
		for _, it := range resp.Segment.BlobItems {
			if it == nil || it.Name == nil {
				continue
			}
			bi := BlobInfo{Name: *it.Name}
			if pr := it.Properties; pr != nil {
				bi.Size = deref(pr.ContentLength)
				bi.ContentType = deref(pr.ContentType)
				if pr.ETag != nil {
					bi.ETag = string(*pr.ETag)
				}
				bi.LastModified = deref(pr.LastModified)
			}
			p.Blobs = append(p.Blobs, bi)
		}
	}
	return p, nil
}

// List yields every blob whose name starts with prefix, a page of up to
// 5000 at a time, stopping at the first error (yielded last) or when the
// loop breaks.
func (c *Conn) List(ctx context.Context, prefix string) iter.Seq2[BlobInfo, error] {
	return func(yield func(BlobInfo, error) bool) {
		marker := ""
		for {
			p, err := c.ListPage(ctx, prefix, marker, 0)
			if err != nil {
				yield(BlobInfo{}, err)
				return
			}
			for _, b := range p.Blobs {
				if !yield(b, nil) {
					return
				}
			}
			if p.Next == "" {
				return
			}
			marker = p.Next
		}
	}
}

// Properties returns the blob's size, content type, ETag and time of last
// change, in one HEAD request.
func (c *Conn) Properties(ctx context.Context, name string) (BlobInfo, error) {
	resp, err := c.client.NewBlobClient(name).GetProperties(ctx, nil)
	if err != nil {
		return BlobInfo{}, c.wrap("properties", name, err)
	}
	bi := BlobInfo{
		Name:         name,
		Size:         deref(resp.ContentLength),
		ContentType:  deref(resp.ContentType),
		LastModified: deref(resp.LastModified),
	}
	if resp.ETag != nil {
		bi.ETag = string(*resp.ETag)
	}
	return bi, nil
}

// Read returns the blob's body. The reader uses this connection until it
// is closed, so it must be closed before the loan ends; see Open for a
// reader that holds the loan itself.
func (c *Conn) Read(ctx context.Context, name string) (io.ReadCloser, error) {
	return c.ReadRange(ctx, name, 0, 0)
}

// ReadRange returns count bytes of the blob from offset (to its end when
// count is 0), as Read does.
func (c *Conn) ReadRange(ctx context.Context, name string, offset, count int64) (io.ReadCloser, error) {
	if offset < 0 || count < 0 {
		return nil, &Error{Op: "read", Container: c.name, Blob: name,
			msg: "azblob: read " + c.name + "/" + name + ": offset and count must not be negative"}
	}
	opts := &blob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: offset, Count: count}}
	resp, err := c.client.NewBlobClient(name).DownloadStream(ctx, opts)
	if err != nil {
		return nil, c.wrap("read", name, err)
	}
	// A connection that breaks mid-body is not the end of the read: the
	// retry reader asks again from the offset it had reached, for the same
	// version of the blob (If-Match on its ETag), as often as readRetries.
	rr := resp.NewRetryReader(ctx, &blob.RetryReaderOptions{MaxRetries: readRetries, EarlyCloseAsError: true})
	return &body{rc: rr, c: c, name: name}, nil
}

// readRetries is how many times a read whose connection broke mid-body
// resumes.
const readRetries = 3

// UploadOptions are optional settings of Upload.
type UploadOptions struct {
	ContentType string
	Metadata    map[string]string
}

// maxSinglePut is the largest body Upload sends in one request when it
// can seek; larger or unseekable bodies go in 4 MiB blocks, one at a time.
const maxSinglePut = 64 << 20

// Upload writes body to the blob, replacing it if it exists.
func (c *Conn) Upload(ctx context.Context, name string, body io.Reader, opts *UploadOptions) error {
	var headers *blob.HTTPHeaders
	var meta map[string]*string
	if opts != nil {
		if opts.ContentType != "" {
			headers = &blob.HTTPHeaders{BlobContentType: &opts.ContentType}
		}
		if len(opts.Metadata) > 0 {
			meta = make(map[string]*string, len(opts.Metadata))
			for k, v := range opts.Metadata {
				meta[k] = &v
			}
		}
	}
	bb := c.client.NewBlockBlobClient(name)
	if rs, ok := body.(io.ReadSeeker); ok {
		cur, err1 := rs.Seek(0, io.SeekCurrent)
		end, err2 := rs.Seek(0, io.SeekEnd)
		if err := errors.Join(err1, err2); err != nil {
			return c.wrap("upload", name, err)
		}
		if _, err := rs.Seek(cur, io.SeekStart); err != nil {
			return c.wrap("upload", name, err)
		}
		if end-cur <= maxSinglePut {
			_, err := bb.Upload(ctx, streaming.NopCloser(rs), &blockblob.UploadOptions{HTTPHeaders: headers, Metadata: meta})
			return c.wrap("upload", name, err)
		}
	}
	_, err := bb.UploadStream(ctx, body, &blockblob.UploadStreamOptions{
		BlockSize: 4 << 20, Concurrency: 1, HTTPHeaders: headers, Metadata: meta,
	})
	return c.wrap("upload", name, err)
}

// body is a blob's body; errors reading it are wrapped like the others.
type body struct {
	rc   io.ReadCloser
	c    *Conn
	name string
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		err = b.c.wrap("read", b.name, err)
	}
	return n, err
}

// drainLimit is how much of an unread body Close reads away so that the
// connection stays open for the next request; a longer rest is cut, and
// the next request dials again.
const drainLimit = 64 << 10

func (b *body) Close() error {
	_, _ = io.CopyN(io.Discard, b.rc, drainLimit)
	return b.rc.Close()
}

// loanBody is a body that holds a loan and ends it when closed.
type loanBody struct {
	io.ReadCloser
	release func()
	closed  bool
}

func (l *loanBody) Close() error {
	if l.closed {
		return nil
	}
	l.closed = true
	err := l.ReadCloser.Close()
	l.release()
	return err
}

// Open borrows a connection of Blob source id from reg and returns the
// blob's body over it. The connection goes back to the pool when the
// reader is closed, and not before; a reader never closed is a leaked
// loan (see pool.Config.LeakThreshold). Close is idempotent. On error no
// connection is held.
func Open[C pool.Connector](ctx context.Context, reg *pool.PooledRegistry[C], id, name string) (io.ReadCloser, error) {
	return OpenRange(ctx, reg, id, name, 0, 0)
}

// OpenRange is Open for count bytes from offset (to the end when count is
// 0).
func OpenRange[C pool.Connector](ctx context.Context, reg *pool.PooledRegistry[C], id, name string, offset, count int64) (io.ReadCloser, error) {
	pc, err := reg.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	bc, ok := any(pc.Conn()).(*Conn)
	if !ok {
		err := notBlob(id, pc.Conn())
		pc.Release()
		return nil, err
	}
	rc, err := bc.ReadRange(ctx, name, offset, count)
	if err != nil {
		pc.Release()
		return nil, err
	}
	return &loanBody{ReadCloser: rc, release: pc.Release}, nil
}

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
