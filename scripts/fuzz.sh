#!/usr/bin/env bash
# Runs a fuzz target under a coverage-guided fuzzer, on stable Rust.
#
#   bash scripts/fuzz.sh TARGET [SECONDS] [--save]
#   bash scripts/fuzz.sh all [SECONDS] [--save]     # every target in turn
#   bash scripts/fuzz.sh list                       # the target names
#
# SECONDS defaults to 600 per target. The engine is libFuzzer through
# cargo-bolero, built without sanitizers (`--sanitizer NONE`), which needs
# no nightly: the coverage instrumentation is stable `-C` flags. Install it
# once with `cargo install cargo-bolero --locked`.
#
# The fuzzer starts from a copy of the target's checked-in corpus (the
# `__fuzz__/<test>/corpus` directory next to the test) and works in
# target/fuzz/work/<target>/. With --save, the inputs it found that reach
# new coverage are merged into the checked-in corpus (libFuzzer's merge
# keeps only those); without it the checked-in corpus is left alone.
# A crash stops the run; its input is in target/fuzz/work/<target>/crashes/
# and becomes a file of the corpus plus a named regression test.
#
# The fuzzer runs under `nice -n 19` so a shared machine stays usable.
# Under plain `cargo test` the same targets replay their corpus and try
# random inputs for two seconds each.
set -euo pipefail
cd "$(dirname "$0")/.."

# name  package  test (the #[test] function, with its module path)
TARGETS="
node-messages     flproto  node_messages_that_parse_round_trip
server-messages   flproto  server_messages_that_parse_round_trip
node-info         flproto  node_infos_are_validated_to_the_grammar_fledger_decodes
hex-fields        flproto  hex_fields_accept_exactly_their_length_in_hex_digits
session           flproto  server_session_keeps_its_promises_under_any_script
announce          flproto  announces_verify_only_when_signed_for_the_stored_challenge_and_server
setup-auth        flproto  setups_are_accepted_only_signed_by_their_sender_and_fresh
cluster-messages  flproto  cluster_messages_that_parse_round_trip
cluster-presence  flproto  cluster_presence_keeps_exactly_one_owner_per_node
presence          flproto  presence_lists_and_news_name_only_members_within_the_limits
stun              flsignal stun_answers_only_binding_requests_and_never_amplifies
stun-budgets      flsignal stun_source_budgets_stay_bounded
ctl               flnode   ctl::fuzz::ctl_replies_and_state_stay_bounded_under_any_messages
"

usage() {
  echo "usage: $0 TARGET|all|list [SECONDS] [--save]" >&2
  exit 2
}

target="${1:-}"
[ -n "$target" ] || usage
shift
seconds=600
save=false
for arg in "$@"; do
  case "$arg" in
    --save) save=true ;;
    '' | *[!0-9]*) usage ;;
    *) seconds="$arg" ;;
  esac
done

if [ "$target" = list ]; then
  echo "$TARGETS" | awk 'NF { print $1 }'
  exit 0
fi

if ! cargo bolero --version >/dev/null 2>&1; then
  echo "$0: cargo-bolero is not installed; run: cargo install cargo-bolero --locked" >&2
  exit 1
fi

export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

# The checked-in corpus of a test: next to the file that defines it.
corpus_of() {
  local package="$1" test="$2" dir
  case "$package" in
    flproto) dir=shared/tests ;;
    flsignal) dir=flsignal/tests ;;
    flnode) dir=flnode/src ;;
  esac
  echo "$dir/__fuzz__/${test//::/__}/corpus"
}

run_one() {
  local name="$1" package="$2" test="$3"
  local corpus work
  corpus="$(corpus_of "$package" "$test")"
  work="target/fuzz/work/$name"
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/crashes" "$corpus"
  cp "$corpus"/* "$work/corpus/" 2>/dev/null || true
  echo "== fuzz $name ($package $test) for ${seconds}s"
  local status=0
  nice -n 19 cargo bolero test --package "$package" "$test" \
    --engine libfuzzer --sanitizer NONE -T "${seconds}s" \
    --corpus-dir "$work/corpus" --crashes-dir "$work/crashes" \
    2>&1 | tee "$work/log" | grep -E '^#[0-9]+ +(INITED|DONE)|^(==|SUMMARY|Done )|panicked|Test Failure' || true
  status="${PIPESTATUS[0]}"
  local crashes
  crashes="$(find "$work/crashes" -type f -name 'crash-*' | wc -l)"
  if [ "$status" != 0 ] || [ "$crashes" != 0 ]; then
    echo "$0: $name failed (exit $status, $crashes crash inputs in $work/crashes); log: $work/log" >&2
    return 1
  fi
  if $save; then
    # Merge mode: of the inputs in the second directory, add to the first
    # those that reach coverage the first does not.
    nice -n 19 cargo bolero test --package "$package" "$test" \
      --engine libfuzzer --sanitizer NONE \
      --corpus-dir "$corpus" --crashes-dir "$work/corpus" -E -merge=1 >>"$work/merge.log" 2>&1
    echo "$name: corpus now $(find "$corpus" -type f | wc -l) files, $(du -sh "$corpus" | cut -f1)"
  fi
}

found=false
failed=0
while read -r name package test; do
  [ -n "$name" ] || continue
  if [ "$target" = all ] || [ "$target" = "$name" ]; then
    found=true
    run_one "$name" "$package" "$test" || failed=$((failed + 1))
  fi
done <<<"$TARGETS"

$found || {
  echo "$0: no target $target; try: $0 list" >&2
  exit 2
}
[ "$failed" = 0 ]
