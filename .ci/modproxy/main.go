// Command modproxy writes a file-system Go module proxy (GOPROXY=file://DIR)
// holding every module of this repository at one version, built from the
// files git tracks, as tagging that version would publish them. CI uses it
// to show that a module outside the repository can `go get` each of ours.
//
//	go run ./.ci/modproxy -version v0.1.0 -out /tmp/proxy
package main

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

func main() {
	version := flag.String("version", "", "the version to publish every module at")
	out := flag.String("out", "", "the proxy directory to write")
	flag.Parse()
	if *version == "" || *out == "" {
		log.Fatal("usage: modproxy -version vX.Y.Z -out DIR")
	}
	files, err := trackedFiles()
	if err != nil {
		log.Fatal(err)
	}
	// Every directory holding a go.mod is a module root.
	var roots []string
	for _, f := range files {
		if path.Base(f) == "go.mod" {
			roots = append(roots, path.Dir(f))
		}
	}
	sort.Strings(roots)
	for _, root := range roots {
		if err := publish(root, roots, files, *version, *out); err != nil {
			log.Fatal(err)
		}
	}
}

// trackedFiles lists the files git tracks, relative to the repository root.
func trackedFiles() ([]string, error) {
	b, err := exec.Command("git", "ls-files").Output()
	if err != nil {
		return nil, fmt.Errorf("git ls-files: %w", err)
	}
	return strings.Fields(string(b)), nil
}

// owner is the module root that holds file f: the longest root that is a
// prefix of its directory.
func owner(f string, roots []string) string {
	best := ""
	for _, r := range roots {
		if r == "." || f == r || strings.HasPrefix(f, r+"/") {
			if len(r) > len(best) || best == "" {
				best = r
			}
		}
	}
	return best
}

func modulePath(gomod []byte) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		if p, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.TrimSpace(p), nil
		}
	}
	return "", fmt.Errorf("no module line")
}

func publish(root string, roots, files []string, version, out string) error {
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return err
	}
	mod, err := modulePath(gomod)
	if err != nil {
		return fmt.Errorf("%s/go.mod: %w", root, err)
	}
	dir := filepath.Join(out, filepath.FromSlash(mod), "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	n := 0
	for _, f := range files {
		if owner(f, roots) != root || path.Base(f) == "go.work" || path.Base(f) == "go.work.sum" {
			continue
		}
		rel := f
		if root != "." {
			rel = strings.TrimPrefix(f, root+"/")
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		w, err := zw.Create(mod + "@" + version + "/" + rel)
		if err != nil {
			return err
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
		n++
	}
	if err := zw.Close(); err != nil {
		return err
	}
	info, _ := json.Marshal(struct {
		Version string
		Time    time.Time
	}{version, time.Now().UTC().Truncate(time.Second)})
	for name, data := range map[string][]byte{
		version + ".zip":  buf.Bytes(),
		version + ".mod":  gomod,
		version + ".info": info,
		"list":            []byte(version + "\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("%s@%s: %d files\n", mod, version, n)
	return nil
}
