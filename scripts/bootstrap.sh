#!/usr/bin/env bash
# Installs everything kr-book needs on a fresh Debian machine: the offline data and the browser for
# the book tests (Debian packages), MathJax for offline math (npm), and a local virtual environment
# (.venv) with PyTorch and the package itself. Safe to run again: each step is skipped when done.
set -euo pipefail  # pipefail: a failed pip install fails the script despite the sed filter
cd "$(dirname "$0")/.."

apt_packages=(dataset-fashion-mnist chromium chromium-driver)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null  # as tested: with recommends
  else
    echo "bootstrap: missing Debian packages ${missing[*]}; run: sudo apt-get install ${missing[*]}" >&2
  fi
fi

# MathJax 3, served from the book's own _static folder so that math renders offline too.
if [ ! -f .cache/mathjax/node_modules/mathjax/es5/tex-mml-chtml.js ]; then
  echo "bootstrap: fetching MathJax 3 from npm"
  mkdir -p .cache/mathjax
  npm install --silent --no-audit --no-fund --prefix .cache/mathjax mathjax@3 >/dev/null
fi

stamp=.venv/.kr-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: creating .venv (PyTorch and the package; a few minutes the first time)"
  python3 -m venv .venv
  # The pinned wheels lie on this machine's disk (see /etc/xdg/pip); elsewhere pip fetches them.
  # (sed drops pip's warnings about this machine's unused local index folders)
  .venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1 2>&1 | sed '/is ignored: it is neither/d'
  .venv/bin/python -m pip install -q -e ".[test,bench,measure]" 2>&1 | sed '/is ignored: it is neither/d' 
  touch "$stamp"
fi
