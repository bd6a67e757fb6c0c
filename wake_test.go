package pool

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// poolSource parses the package's non-test files.
func poolSource(t *testing.T) (*token.FileSet, []*ast.File) {
	t.Helper()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return fset, files
}

// eachFunc calls fn with every function declaration and its name
// ("Type.method" for a method).
func eachFunc(files []*ast.File, fn func(name string, d *ast.FuncDecl)) {
	for _, f := range files {
		for _, decl := range f.Decls {
			d, ok := decl.(*ast.FuncDecl)
			if !ok || d.Body == nil {
				continue
			}
			name := d.Name.Name
			if d.Recv != nil && len(d.Recv.List) == 1 {
				t := d.Recv.List[0].Type
				if s, ok := t.(*ast.StarExpr); ok {
					t = s.X
				}
				if ix, ok := t.(*ast.IndexExpr); ok {
					t = ix.X
				}
				if id, ok := t.(*ast.Ident); ok {
					name = id.Name + "." + name
				}
			}
			fn(name, d)
		}
	}
}

// Nobody is woken under the pool's lock, as states.go and POOLING.md say:
// every send on a waiter's or WaitReady caller's channel is made by
// delivery.deliver, which unlock calls after unlocking and a handoff
// after its caller unlocked; p.mu is unlocked only by unlock; and no
// function that runs with p.mu held (its name ends in Locked) carries
// out a handoff or delivers.
func TestNobodyIsWokenUnderTheLock(t *testing.T) {
	fset, files := poolSource(t)
	isPoolMu := func(x ast.Expr) bool {
		sel, ok := x.(*ast.SelectorExpr)
		if !ok || sel.Sel.Name != "mu" {
			return false
		}
		id, ok := sel.X.(*ast.Ident)
		return ok && id.Name == "p"
	}
	sends, unlocks := 0, 0
	eachFunc(files, func(name string, d *ast.FuncDecl) {
		ast.Inspect(d.Body, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.SendStmt:
				if sel, ok := n.Chan.(*ast.SelectorExpr); ok && sel.Sel.Name == "ch" {
					sends++
					if name != "delivery.deliver" {
						t.Errorf("%s: %s sends on a waiter's channel; only delivery.deliver may", fset.Position(n.Pos()), name)
					}
				}
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				switch {
				case sel.Sel.Name == "Unlock" && isPoolMu(sel.X):
					unlocks++
					if name != "Pool.unlock" && name != "Pool.unlockAndWake" {
						t.Errorf("%s: %s unlocks p.mu itself; only unlock may, which delivers what was queued", fset.Position(n.Pos()), name)
					}
				case (sel.Sel.Name == "do" || sel.Sel.Name == "doAll" || sel.Sel.Name == "deliver") && strings.HasSuffix(name, "Locked"):
					t.Errorf("%s: %s, which runs with p.mu held, carries out a handoff", fset.Position(n.Pos()), name)
				}
			}
			return true
		})
	})
	if sends == 0 || unlocks == 0 {
		t.Fatalf("found %d sends and %d unlocks: the check no longer sees the code", sends, unlocks)
	}
}

// Every function, method and field that POOLING.md names in backquotes,
// as `name`, `name()` or `Type.name`, exists in the package.
func TestDocsNameWhatExists(t *testing.T) {
	_, files := poolSource(t)
	known, imported := map[string]bool{}, map[string]bool{"ctx": true}
	for _, f := range files {
		for _, imp := range f.Imports {
			path := strings.Trim(imp.Path.Value, `"`)
			imported[path[strings.LastIndex(path, "/")+1:]] = true
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.FuncDecl:
				known[n.Name.Name] = true
			case *ast.TypeSpec:
				known[n.Name.Name] = true
			case *ast.ValueSpec:
				for _, id := range n.Names {
					known[id.Name] = true
				}
			case *ast.Field:
				for _, id := range n.Names {
					known[id.Name] = true
				}
			}
			return true
		})
	}
	doc, err := os.ReadFile("POOLING.md")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for i, part := range strings.Split(string(doc), "`") {
		if i%2 == 0 {
			continue // outside backquotes
		}
		name := strings.TrimSuffix(part, "()")
		if !isCodeName(name) {
			continue
		}
		if i := strings.Index(name, "."); i >= 0 && (!known[name[:i]] || imported[name[:i]]) {
			continue // another package's: postgres.Options, http.Transport
		}
		checked++
		last := name[strings.LastIndex(name, ".")+1:]
		if !known[last] {
			t.Errorf("POOLING.md names `%s`, which the package does not have", part)
		}
	}
	if checked < 20 {
		t.Fatalf("only %d names checked in POOLING.md: the check no longer sees the doc", checked)
	}
}

// isCodeName reports whether s looks like a Go identifier the docs mean
// as one of the package's own: a lower-case camel-case name (a function,
// method or field), or Type.method.
func isCodeName(s string) bool {
	if s == "" || strings.ContainsAny(s, " /-=:,'\"*[]{}<>&|!+%#") || strings.HasSuffix(s, ".go") || strings.HasSuffix(s, ".md") {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if part == "" {
			return false
		}
		for _, r := range part {
			if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
				return false
			}
		}
	}
	first := s[0]
	if strings.Contains(s, ".") {
		return true
	}
	// A single word: a lower-case name with a capital inside (camel case)
	// or ending in Locked is code; plain words (`idle`, `lent`) are not.
	return first >= 'a' && first <= 'z' && strings.ContainsAny(s[1:], "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
}
