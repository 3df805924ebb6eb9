#!/usr/bin/awk -f
# Sums `perf report --no-children --sort dso,symbol` self percentages by
# component, for bench/run.sh profile. Input lines: "  12.34%  dso  [.] symbol".
function group(dso, sym) {
  if (dso ~ /kernel/) return "kernel (TCP, epoll, syscalls, scheduler)"
  if (sym ~ /^(malloc|free|cfree|_int_free|_int_malloc|_int_realloc|realloc|calloc|__libc_calloc|malloc_consolidate|unlink_chunk|tcache|arena_get|__libc_malloc|__libc_free|__libc_realloc|_int_memalign)/) return "allocator (glibc malloc/free)"
  if (sym ~ /^__mem|^mem(cpy|move|set|cmp)/) return "libc memcpy/memmove/memset/memcmp"
  if (sym ~ /aws_lc.*(bn_|BN_|RSA|rsa)/) return "aws-lc RSA/bignum"
  if (sym ~ /aws_lc.*(sha256|SHA256)/) return "aws-lc SHA-256"
  if (sym ~ /aws_lc/) return "aws-lc other"
  if (sym ~ /prometheus/) return "prometheus"
  if (sym ~ /tracing|access::/) return "tracing / access log"
  if (sym ~ /uuid|getrandom|rand::/) return "uuid / getrandom"
  if (sym ~ /serde_json|serde::/) return "serde_json"
  if (sym ~ /jsonwebtoken|base64/) return "jsonwebtoken / base64"
  if (sym ~ /^bytes::/) return "bytes (Bytes refcounts)"
  if (sym ~ /drop_in_place/) return "drop glue"
  if (sym ~ /^idp_gate::|<idp_gate::/) return "idp_gate (own code)"
  if (sym ~ /hyper_util/) return "hyper-util (client pool, server auto)"
  if (sym ~ /hyper|httparse/) return "hyper / httparse"
  if (sym ~ /^http::|<http::/) return "http (HeaderMap, Uri)"
  if (sym ~ /tokio|mio::/) return "tokio / mio"
  if (sym ~ /hashbrown|core::hash|std::collections::hash|sip/) return "hashing / HashMap"
  if (sym ~ /pthread|__lll_|futex|syscall|epoll|__GI_|libc_/ || dso ~ /libc/) return "libc other (locks, syscalls)"
  return "other: " dso
}
/%/ {
  pct = $1; sub(/%/, "", pct)
  dso = $2
  sym = $0; sub(/^.*\[[.k]\] /, "", sym)
  g = group(dso, sym); sum[g] += pct
}
END {
  for (g in sum) printf "%8.2f%%  %s\n", sum[g], g | "sort -rn"
}
