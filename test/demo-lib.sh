# Shared by test/demo.sh and test/demo-multicluster.sh (sourced, with root and BIN set).

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

HELM=${HELM:-$BIN/helm}
export HELM_CACHE_HOME=${HELM_CACHE_HOME:-$root/.work/helm/cache} HELM_CONFIG_HOME=${HELM_CONFIG_HOME:-$root/.work/helm/config} HELM_DATA_HOME=${HELM_DATA_HOME:-$root/.work/helm/data}

# stop_pid stops the process whose pid the file holds, SIGTERM then SIGKILL, and removes the file.
stop_pid() {
  local file=$1 pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}
