#!/usr/bin/env bash
# Runs a fuzz target under a coverage-guided fuzzer, on stable Rust.
#
#   bash scripts/fuzz.sh TARGET [SECONDS] [--save]
#   bash scripts/fuzz.sh all [SECONDS] [--save]     # every target in turn
#   bash scripts/fuzz.sh list                       # the target names
#
# SECONDS defaults to 600 per target. The engine is libFuzzer, linked in
# by bolero when the target is built with `--cfg fuzzing_libfuzzer` and
# LLVM's coverage instrumentation. Those are stable `-C` flags, and no
# sanitizer is used, so stable Rust and a C++ compiler (for libFuzzer's
# sources) are all it takes. This is what `cargo bolero test --sanitizer
# NONE` does, done here directly because cargo-bolero builds every test
# binary of a package, and those that do not use bolero fail to link.
#
# The fuzzer starts from a copy of the target's checked-in corpus (the
# `__fuzz__/<test>/corpus` directory next to the test) and works in
# target/fuzz/work/<target>/. With --save, the inputs it found that reach
# new coverage are merged into the checked-in corpus (libFuzzer's merge
# keeps only those); without it the checked-in corpus is left alone.
# A crash stops the run; its input is in target/fuzz/work/<target>/crashes/
# and becomes a file of the corpus plus a named regression test.
#
# Builds and runs are under `nice -n 19` so a shared machine stays usable.
# Under plain `cargo test` the same targets replay their corpus and try
# random inputs for two seconds each.
set -euo pipefail
cd "$(dirname "$0")/.."

# name, package, cargo target holding the test, test (the #[test] function
# with its module path)
TARGETS="
node-messages     flproto  --test=fuzz_wire         node_messages_that_parse_round_trip
server-messages   flproto  --test=fuzz_wire         server_messages_that_parse_round_trip
node-info         flproto  --test=fuzz_wire         node_infos_are_validated_to_the_grammar_fledger_decodes
hex-fields        flproto  --test=fuzz_wire         hex_fields_accept_exactly_their_length_in_hex_digits
session           flproto  --test=fuzz_session      server_session_keeps_its_promises_under_any_script
announce          flproto  --test=fuzz_announce     announces_verify_only_when_signed_for_the_stored_challenge_and_server
setup-auth        flproto  --test=fuzz_setup_auth   setups_are_accepted_only_signed_by_their_sender_and_fresh
seal              flproto  --test=fuzz_seal         sealed_setups_open_only_when_sealed_and_padded_as_flproto_seals
cluster-messages  flproto  --test=fuzz_cluster      cluster_messages_that_parse_round_trip
cluster-presence  flproto  --test=fuzz_cluster      cluster_presence_keeps_exactly_one_owner_per_node
presence          flproto  --test=fuzz_presence     presence_lists_and_news_name_only_members_within_the_limits
stun              flsignal --test=fuzz_stun         stun_answers_only_binding_requests_and_never_amplifies
stun-budgets      flsignal --test=fuzz_stun         stun_source_budgets_stay_bounded
turn              flsignal --test=fuzz_turn         turn_never_relays_to_refused_peers_nor_outgrows_its_limits
turn-streams      flsignal --test=fuzz_turn         turn_streams_are_cut_into_bounded_frames
turn-usernames    flsignal --test=fuzz_turn         credential_usernames_parse_or_are_refused
ctl               flnode   --bin=flnode             ctl::fuzz::ctl_replies_and_state_stay_bounded_under_any_messages
relay-frames      flproto  --test=fuzz_datagram_relay relay_frames_parse_to_their_bytes_or_are_refused
relay-budget      flproto  --test=fuzz_datagram_relay a_granted_session_forwards_only_good_frames_within_its_budget_and_never_closes
halves            flproto  --test=fuzz_halves       any_messages_from_a_peer_join_only_true_pairs_within_the_limits
"

# What cargo-bolero's libfuzzer engine passes: bolero's cfgs and LLVM's
# coverage counters, comparison tracing and stack depth.
FUZZ_RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module --cfg fuzzing_libfuzzer \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cllvm-args=-sanitizer-coverage-stack-depth"
# An explicit --target keeps build scripts and proc macros uninstrumented.
HOST="$(rustc -vV | sed -n 's/^host: //p')"

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

# Builds the test binary holding a target, instrumented; prints its path.
build() {
  local package="$1" selector="$2"
  RUSTFLAGS="$FUZZ_RUSTFLAGS" nice -n 19 cargo test --package "$package" "$selector" \
    --target "$HOST" --profile fuzz --target-dir target/fuzz/libfuzzer --no-run 2>&1 |
    tee target/fuzz/build.log |
    sed -n 's/^ *Executable .*(\(.*\))$/\1/p' | tail -n 1
}

# Runs the test `test` of binary `exe` as libFuzzer with these arguments.
libfuzzer() {
  local exe="$1" test="$2"
  shift 2
  BOLERO_LIBFUZZER_ARGS="$*" BOLERO_TEST_NAME="$test" BOLERO_LIBTEST_HARNESS=1 \
    nice -n 19 "$exe" "$test" --exact --nocapture --quiet --test-threads 1
}

run_one() {
  local name="$1" package="$2" selector="$3" test="$4"
  local corpus work exe
  corpus="$(corpus_of "$package" "$test")"
  work="target/fuzz/work/$name"
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/crashes" "$corpus"
  cp "$corpus"/* "$work/corpus/" 2>/dev/null || true
  echo "== fuzz $name ($package $selector $test) for ${seconds}s"
  exe="$(build "$package" "$selector")"
  if [ -z "$exe" ] || [ ! -x "$exe" ]; then
    echo "$0: building $package $selector failed; see target/fuzz/build.log" >&2
    return 1
  fi
  local status=0
  libfuzzer "$exe" "$test" "$work/corpus" "$work/crashes" \
    "-artifact_prefix=$work/crashes/" -timeout=10 "-max_total_time=$seconds" \
    >"$work/log" 2>&1 || status=$?
  grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^Done [0-9]+ runs|panicked|Test Failure' "$work/log" || true
  local crashes
  crashes="$(find "$work/crashes" -type f | wc -l)"
  if [ "$status" != 0 ] || [ "$crashes" != 0 ]; then
    echo "$0: $name failed (exit $status, $crashes inputs in $work/crashes); log: $work/log" >&2
    return 1
  fi
  if $save; then
    # Merge mode: of the inputs in the second directory, add to the first
    # those that reach coverage the first does not.
    libfuzzer "$exe" "$test" -merge=1 "$corpus" "$work/corpus" >"$work/merge.log" 2>&1
    echo "$name: corpus now $(find "$corpus" -type f | wc -l) files, $(du -sh "$corpus" | cut -f1)"
  fi
}

found=false
failed=0
mkdir -p target/fuzz
while read -r name package selector test; do
  [ -n "$name" ] || continue
  if [ "$target" = all ] || [ "$target" = "$name" ]; then
    found=true
    run_one "$name" "$package" "$selector" "$test" || failed=$((failed + 1))
  fi
done <<<"$TARGETS"

$found || {
  echo "$0: no target $target; try: $0 list" >&2
  exit 2
}
[ "$failed" = 0 ]
