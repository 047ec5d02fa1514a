#!/usr/bin/env python3
"""Where a server's CPU goes, from `perf script` output (BENCHMARKS.md).

    perf record -e cpu-clock -F 4000 --call-graph dwarf,8192 -p PID -o load.data
    # ... run the load (flload relay / handshakes), then Ctrl-C perf ...
    perf script -i load.data | python3 scripts/perf_shares.py

"self": each sample goes to one group: kernel samples by the system call
they are in (or the scheduler, softirq), user samples by their innermost
frame that matches a group. "inclusive": the share of samples with a
matching frame anywhere on the stack.
"""
import re, sys, collections
SYSCALLS = [
 ("kernel: send (tcp_sendmsg, loopback delivery)", r"__x64_sys_sendto|__x64_sys_write\b|__x64_sys_writev|__x64_sys_sendmsg"),
 ("kernel: recv", r"__x64_sys_recvfrom|__x64_sys_read\b|__x64_sys_readv|__x64_sys_recvmsg"),
 ("kernel: epoll_wait", r"__x64_sys_epoll_wait|__x64_sys_epoll_pwait"),
 ("kernel: futex (thread park/unpark)", r"__x64_sys_futex"),
 ("kernel: accept", r"__x64_sys_accept"),
 ("kernel: close", r"__x64_sys_close"),
 ("kernel: epoll_ctl", r"__x64_sys_epoll_ctl"),
 ("kernel: other syscall", r"__x64_sys_|__do_sys_"),
 ("kernel: scheduler (switch)", r"finish_task_switch|schedule|__schedule"),
 ("kernel: softirq/net", r"net_rx_action|do_softirq|handle_softirqs|__napi_poll|tcp_|ip_"),
]
USER = [
 ("ed25519/sha512", r"ed25519|curve25519|sha2::|Sha512"),
 ("hex decode/encode", r"\bhex::"),
 ("serde_json parse", r"serde_json::(read|de)|serde_core::de|Deserialize|deserialize"),
 ("serde_json write", r"serde_json::(ser|value)|Serialize|serialize|to_json"),
 ("malloc/free", r"\bmalloc|_int_free|_int_malloc|cfree|realloc|unlink_chunk|malloc_consolidate|\bfree\b|sysmalloc|_int_realloc|tcache"),
 ("memcpy/memmove", r"memmove|memcpy|memset|memchr|memcmp"),
 ("clock (vdso)", r"clock_gettime|vdso|Timespec|Instant"),
 ("utf8 check", r"from_utf8|run_utf8_validation"),
 ("presence", r"presence::|Presence<"),
 ("tungstenite", r"tungstenite::"),
 ("hyper/axum/http", r"hyper::|axum::|httparse|http::|tower::|matchit"),
 ("tracing/metrics", r"tracing::|prometheus|tracing_core|tracing_subscriber"),
 ("flume/notify/wakers", r"flume::|Notify|notify|AtomicWaker|atomic_waker|waker"),
 ("tokio time", r"tokio::time|TimerEntry|timer"),
 ("tokio runtime", r"tokio::|mio::"),
 ("futures/bytes", r"futures_|bytes::"),
 ("flsignal/flproto code", r"flsignal::|flproto::"),
 ("matchbox/axum ws", r"matchbox|axum"),
]
INCL = [
 ("serde_json (all)", r"serde_json::"),
 ("hex", r"\bhex::"),
 ("ed25519 verify", r"verify_strict|ed25519_dalek::verifying"),
 ("ed25519 (all)", r"ed25519|curve25519"),
 ("presence (all)", r"presence::"),
 ("node list / news rendering", r"node_list_frame|news_frame|drain_news"),
 ("Hub::register", r"Hub::register"),
 ("Hub::relay", r"Hub::relay"),
 ("Hub::node_list", r"Hub::node_list"),
 ("flush_news", r"flush_news"),
 ("Connection::write (outbound batch)", r"Connection::write"),
 ("Connection::on_socket", r"Connection::on_socket"),
 ("ServerSession::on_inbound", r"on_inbound"),
 ("tungstenite read", r"WebSocketContext::read|read_frame"),
 ("tungstenite write", r"WebSocketContext::write|_write|buffer_frame|write_frame"),
 ("sendto", r"__x64_sys_sendto|__x64_sys_write\b|__x64_sys_writev"),
 ("recvfrom", r"__x64_sys_recvfrom|__x64_sys_read\b"),
 ("epoll_wait", r"epoll_wait"),
 ("futex", r"__x64_sys_futex"),
 ("malloc/free", r"\bmalloc|_int_free|_int_malloc|cfree|realloc"),
 ("hyper (upgrade, http)", r"hyper::"),
 ("accept", r"__x64_sys_accept"),
 ("close", r"__x64_sys_close"),
 ("tracing", r"tracing::|tracing_core|tracing_subscriber"),
 ("metrics", r"prometheus"),
 ("ChallengeNonce::random / getrandom", r"ChallengeNonce::random|getrandom|OsRng"),
]
SYSCALLS=[(n,re.compile(p)) for n,p in SYSCALLS]
USER=[(n,re.compile(p)) for n,p in USER]
INCL=[(n,re.compile(p)) for n,p in INCL]
selfc=collections.Counter(); incl=collections.Counter(); total=0; stack=[]
def classify(stack):
    kernel=[f for f in stack if "[kernel" in f or "kallsyms" in f]
    if kernel:
        for f in reversed(kernel):  # outermost first
            for n,p in SYSCALLS[:8]:
                if p.search(f): return n
        for f in kernel:
            for n,p in SYSCALLS[8:]:
                if p.search(f): return n
        return "kernel: other"
    for f in stack:
        for n,p in USER:
            if p.search(f): return n
    return "other: "+(stack[0].split()[0][:50] if stack else "?")
def flush():
    global total, stack
    if not stack: return
    total+=1
    selfc[classify(stack)]+=1
    for n,p in INCL:
        if any(p.search(f) for f in stack): incl[n]+=1
    stack=[]
for line in sys.stdin:
    if not line.strip(): flush(); continue
    if line[0] in " \t":
        parts=line.strip().split(None,1)
        if len(parts)==2: stack.append(parts[1])
    else: flush()
flush()
print(f"== self ({total} samples)")
for n,c in selfc.most_common(30): print(f"{100*c/total:5.1f}%  {n}")
print("== inclusive")
for n,c in sorted(incl.items(), key=lambda x:-x[1]): print(f"{100*c/total:5.1f}%  {n}")
