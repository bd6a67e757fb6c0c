#!/usr/bin/env bash
# Fails if a tracked file is a compiled binary (ELF, Mach-O, PE, an ar
# archive or WebAssembly) or larger than 1 MB; pictures under docs/ must
# each stay under 300 KB. Build outputs belong in .gitignore, never in git.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=0
while IFS= read -r -d '' f; do
  [ -f "$f" ] || continue # a file deleted in the tree but not yet in git
  size=$(stat -c %s "$f")
  case $f in
  docs/*.png | docs/*.svg | docs/*.jpg | docs/*.gif)
    if [ "$size" -ge 307200 ]; then
      echo "tracked picture over 300 KB: $f ($size bytes)"; bad=1
    fi
    continue ;;
  esac
  if [ "$size" -gt 1048576 ]; then
    echo "tracked file over 1 MB: $f ($size bytes)"; bad=1
  fi
  magic=$(head -c 8 "$f" | od -An -tx1 | tr -d ' \n')
  case $magic in
  7f454c46* | feedface* | feedfacf* | cefaedfe* | cffaedfe* | cafebabe* | 4d5a* | 213c617263683e0a | 0061736d*)
    echo "tracked compiled binary: $f"; bad=1 ;;
  esac
done < <(git ls-files -z)
if [ "$bad" != 0 ]; then
  echo "untrack these (git rm --cached) and add them to .gitignore"
  exit 1
fi
echo "== tracked files: no binary, none over 1 MB, pictures under 300 KB"
