package main

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/deepanalyze/pool/azblob"
)

// blobPage is the JSON of GET /sources/{id}/blobs.
type blobPage struct {
	Source string     `json:"source"`
	Prefix string     `json:"prefix"`
	Blobs  []blobJSON `json:"blobs"`
	// Next is the marker of the next page, empty on the last one.
	Next string `json:"next"`
}

type blobJSON struct {
	Name         string    `json:"name"`
	Size         int64     `json:"size"`
	ContentType  string    `json:"content_type"`
	ETag         string    `json:"etag"`
	LastModified time.Time `json:"last_modified"`
}

// maxPage bounds ?limit=; it is the service's own limit.
const maxPage = 5000

// listBlobs answers GET /sources/{id}/blobs?prefix=p&limit=n&marker=m: one
// page of the blobs whose names start with prefix.
func (s *Service) listBlobs(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	q := r.URL.Query()
	for k, v := range q {
		switch {
		case k != "prefix" && k != "limit" && k != "marker":
			writeError(w, http.StatusBadRequest, "unknown parameter "+quoted(k))
			return
		case len(v) != 1:
			writeError(w, http.StatusBadRequest, "give "+k+" at most once")
			return
		}
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPage {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit must be an integer from 1 to %d", maxPage))
			return
		}
		limit = n
	}
	if !s.isKind(w, id, kindBlob) {
		return
	}
	page := blobPage{Source: id, Prefix: q.Get("prefix"), Blobs: []blobJSON{}}
	err := azblob.With(r.Context(), s.reg, id, func(c *azblob.Conn) error {
		p, err := c.ListPage(r.Context(), page.Prefix, q.Get("marker"), limit)
		for _, b := range p.Blobs {
			page.Blobs = append(page.Blobs, blobJSON(b))
		}
		page.Next = p.Next
		return err
	})
	if err != nil {
		s.writeSourceError(w, r, id, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

// readBlob answers GET /sources/{id}/blobs/{name...} with the blob's
// bytes, streamed from Blob Storage over a pooled connection that goes
// back when the copy ends.
func (s *Service) readBlob(w http.ResponseWriter, r *http.Request) {
	id, name := r.PathValue("id"), r.PathValue("name")
	if len(r.URL.Query()) != 0 {
		writeError(w, http.StatusBadRequest, "this endpoint takes no parameters")
		return
	}
	if !s.isKind(w, id, kindBlob) {
		return
	}
	rc, err := azblob.Open(r.Context(), s.reg, id, name)
	if err != nil {
		s.writeSourceError(w, r, id, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, rc); err != nil {
		// The status is sent; the client sees a short body.
		s.log.Warn("blob read cut short", "source", id, "error", err)
	}
}
