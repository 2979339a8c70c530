#!/usr/bin/env bash
# real-mtas.sh: private real smart hosts (Postfix, Exim 4.96, sendmail 8.17) on 127.0.0.1, for
# comparing the harness's ETRN replies with real servers. Nothing outside DEBDIR and RUNDIR is
# written; the system MTA and the real /etc files are never touched (Exim and sendmail see private
# copies of /etc/passwd, /etc/group, /etc/hosts, /etc/nsswitch.conf and /etc/resolv.conf through a
# private mount namespace). See README.md next to this script.
#
#   real-mtas.sh fetch DEBDIR          download the Exim and sendmail .debs (and the libraries they
#                                      need that are not installed) into DEBDIR; idempotent
#   real-mtas.sh start DEBDIR RUNDIR   build and start five servers; prints "NAME 127.0.0.1:PORT"
#                                      per server on stdout (also in RUNDIR/servers.txt)
#   real-mtas.sh stop RUNDIR           stop them; idempotent
#
# Needs root, Debian 12 (bookworm), util-linux (unshare, setsid), and Postfix installed
# (apt-get install postfix). Environment: ETRN_HOLD (default 5): seconds the exim-etrn-command
# server keeps an ETRN queue run going (so a repeat gets "458 Already processing").
set -uo pipefail

SERVERS="postfix exim exim-default exim-etrn-command sendmail"
HOSTNAME_FQDN=mx.test
RELAY_DOMAIN=a.example
ETRN_HOLD=${ETRN_HOLD:-5}

# Exim and sendmail packages plus what the binaries need beyond Debian's base system; fetch adds
# every library package they depend on that is not installed.
EXIM_DEBS=(exim4-daemon-light exim4-base exim4-config)
SENDMAIL_DEBS=(sendmail-bin sendmail-base sendmail-cf liblockfile1 libwrap0 m4)

log() { printf 'real-mtas: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() {
    cat >&2 <<'EOF'
usage: real-mtas.sh fetch DEBDIR
       real-mtas.sh start DEBDIR RUNDIR
       real-mtas.sh stop RUNDIR
EOF
    exit 2
}

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (private daemons, mount namespaces)"; }

abs_dir() { (cd "$1" 2>/dev/null && pwd -P) || die "no such folder: $1"; }

# ---------------------------------------------------------------------------------------------
# fetch

pkg_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

deb_present() { # deb_present DIR PKG
    compgen -G "$1/$2_*.deb" >/dev/null
}

# The library packages a .deb depends on (first alternative unless one is installed), one a line.
lib_deps() {
    dpkg-deb -f "$1" Depends Pre-Depends 2>/dev/null |
        sed -e 's/^[A-Za-z-]*: //' | tr ',' '\n' |
        while IFS= read -r alts; do
            chosen=
            IFS='|' read -r -a items <<<"$alts"
            for item in "${items[@]}"; do
                name=$(printf '%s' "$item" | sed -e 's/([^)]*)//g' -e 's/:any//' -e 's/[[:space:]]//g')
                [ -n "$name" ] || continue
                if pkg_installed "$name"; then chosen=; break; fi
                [ -z "$chosen" ] && chosen=$name
            done
            case "$chosen" in lib*) printf '%s\n' "$chosen" ;; esac
        done
}

download() { # download DEBDIR PKG...
    local dir=$1; shift
    local want=() p
    for p in "$@"; do deb_present "$dir" "$p" || want+=("$p"); done
    [ ${#want[@]} -eq 0 ] && return 0
    log "apt-get download ${want[*]}"
    (cd "$dir" && apt-get download "${want[@]}" >&2) || die "apt-get download ${want[*]} failed (run apt-get update first?)"
}

cmd_fetch() {
    [ $# -eq 1 ] || usage
    need_root
    mkdir -p "$1" || die "cannot create $1"
    local dir; dir=$(abs_dir "$1")
    command -v apt-get >/dev/null || die "apt-get not found: Debian 12 is required"
    command -v dpkg-deb >/dev/null || die "dpkg-deb not found"
    if command -v postconf >/dev/null; then
        log "Postfix $(postconf -h mail_version 2>/dev/null) is installed"
    else
        log "note: Postfix is not installed; 'start' needs it: apt-get install postfix (not done here)"
    fi
    download "$dir" "${EXIM_DEBS[@]}" "${SENDMAIL_DEBS[@]}"
    # Library packages the debs need that are not installed, recursively (bounded: 10 rounds).
    local _ f new p
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        new=()
        for f in "$dir"/*.deb; do
            while IFS= read -r p; do
                [ -n "$p" ] || continue
                deb_present "$dir" "$p" || new+=("$p")
            done < <(lib_deps "$f")
        done
        [ ${#new[@]} -eq 0 ] && break
        mapfile -t new < <(printf '%s\n' "${new[@]}" | sort -u)
        download "$dir" "${new[@]}"
    done
    # Check: every shared library of the binaries resolves with the extracted libraries.
    local tmp; tmp=$(mktemp -d) || die "mktemp failed"
    for f in "$dir"/*.deb; do dpkg-deb -x "$f" "$tmp" || { rm -rf "$tmp"; die "dpkg-deb -x $f failed"; }; done
    local libpath missing
    libpath=$(lib_path "$tmp")
    missing=$(for b in usr/sbin/exim4 usr/libexec/sendmail/sendmail usr/libexec/sendmail/makemap usr/bin/m4; do
        LD_LIBRARY_PATH=$libpath ldd "$tmp/$b" 2>&1 | grep 'not found' | sed "s|^|$b: |"
    done)
    rm -rf "$tmp"
    [ -z "$missing" ] || die "libraries still missing after fetch:
$missing"
    log "fetch complete: $(ls "$dir"/*.deb | wc -l) packages in $dir"
}

# Folders holding shared libraries under an extracted root, colon-separated.
lib_path() {
    find "$1" -name '*.so*' \( -type f -o -type l \) -printf '%h\n' 2>/dev/null | sort -u | paste -sd: -
}

# ---------------------------------------------------------------------------------------------
# helpers for start

free_ports() { # free_ports N: N distinct free loopback ports, one a line
    if command -v python3 >/dev/null; then
        python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
for s in socks:
    print(s.getsockname()[1])
EOF
    else
        # without Python: random ports where nothing accepts a connection (at most 1000 tries)
        local n=0 port tries=0 taken=" "
        while [ $n -lt "$1" ] && [ $tries -lt 1000 ]; do
            tries=$((tries + 1))
            port=$((20000 + RANDOM % 12000))
            case "$taken" in *" $port "*) continue ;; esac
            if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                echo "$port"; taken="$taken$port "; n=$((n + 1))
            fi
        done
    fi
}

free_id() { # free_id: a system uid/gid number free in both /etc/passwd and /etc/group
    local id
    for id in $(seq 999 -1 100); do
        if ! cut -d: -f3 /etc/passwd /etc/group "$PRIV/passwd" "$PRIV/group" 2>/dev/null | grep -qx "$id"; then
            echo "$id"; return 0
        fi
    done
    die "no free system uid/gid between 100 and 999"
}

add_account() { # add_account NAME HOME: private user and group NAME (if missing)
    local id
    if ! grep -q "^$1:" "$PRIV/group"; then id=$(free_id); echo "$1:x:$id:" >>"$PRIV/group"; fi
    if ! grep -q "^$1:" "$PRIV/passwd"; then
        id=$(grep "^$1:" "$PRIV/group" | cut -d: -f3)
        echo "$1:x:$id:$id::$2:/usr/sbin/nologin" >>"$PRIV/passwd"
    fi
}

account_ids() { # account_ids NAME: "uid:gid" in the private files
    echo "$(grep "^$1:" "$PRIV/passwd" | cut -d: -f3):$(grep "^$1:" "$PRIV/group" | cut -d: -f3)"
}

make_private_etc() {
    mkdir -p "$PRIV"
    cp /etc/passwd "$PRIV/passwd" && cp /etc/group "$PRIV/group" || die "cannot copy /etc/passwd, /etc/group"
    add_account Debian-exim /var/spool/exim4
    add_account smmta /var/lib/sendmail
    add_account smmsp /var/lib/sendmail
    cat >"$PRIV/hosts" <<EOF
127.0.0.1	localhost
127.0.1.1	$HOSTNAME_FQDN ${HOSTNAME_FQDN%%.*}
127.0.0.2	client.example
::1	localhost ip6-localhost ip6-loopback
EOF
    printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files\nnetworks: files\nservices: files\nprotocols: files\n' >"$PRIV/nsswitch.conf"
    # A resolver on loopback where nothing listens: DNS lookups fail at once, nothing leaves the host.
    printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"$PRIV/resolv.conf"
    echo "$HOSTNAME_FQDN" >"$PRIV/hostname"
    chmod 644 "$PRIV"/*
}

# ns_script (for sh -c): runs a program in a private mount and UTS namespace with the
# private /etc files bind-mounted and the host name mx.test. Without --fork, unshare and sh exec,
# so the PID of a background job is the PID of the program.
ns_script='set -e
p=$1; shift
for f in passwd group hosts nsswitch.conf resolv.conf; do
    if [ -f "/etc/$f" ]; then mount --bind "$p/$f" "/etc/$f"; fi
done
hostname "$(cat "$p/hostname")"
exec "$@"'

ns_run() { # ns_run CMD...: foreground
    LD_LIBRARY_PATH=$LIBPATH unshare --mount --uts --propagation private sh -c "$ns_script" sh "$PRIV" "$@"
}

ns_daemon() { # ns_daemon NAME LOGFILE CMD...: background in its own session; records its PID
    local name=$1 logfile=$2; shift 2
    LD_LIBRARY_PATH=$LIBPATH setsid unshare --mount --uts --propagation private \
        sh -c "$ns_script" sh "$PRIV" "$@" </dev/null >>"$logfile" 2>&1 &
    echo "$! $(start_time $!)" >"$RUN/$name/daemon.pid"
}

# One connection: succeeds when the server sends a 220 line within 5 s (sendmail pauses 1 s).
greeting_once() { # greeting_once PORT (run in a subshell)
    local line
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 2
    IFS= read -r -t 5 -u 3 line || exit 3
    printf 'QUIT\r\n' >&3
    case "$line" in 220*) exit 0 ;; esac
    log "port $1 answered '${line%$'\r'}'"
    exit 4
}

# Bounded wait for a 220 greeting: at most 200 attempts 50 ms apart, and 30 s in all; gives up at
# once when the daemon (started by ns_daemon) has exited.
wait_greeting() { # wait_greeting NAME PORT
    local i deadline=$((SECONDS + 30))
    for i in $(seq 1 200); do
        [ $SECONDS -le $deadline ] || return 1
        (greeting_once "$2") 2>/dev/null && return 0
        if [ "$1" != postfix ] && ! recorded_pid "$1" >/dev/null; then
            log "$1: the daemon exited"
            return 1
        fi
        sleep 0.05
    done
    return 1
}

# alive PID: the process exists and is not a zombie (an orphaned daemon is reaped by PID 1,
# which may take a while).
alive() {
    local state
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null)
    [ -n "$state" ] && [ "$state" != Z ]
}

# start_time PID: the process's start time (field 22 of /proc/PID/stat), which tells a recorded
# process from a later one that reuses its PID.
start_time() {
    sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20
}

# recorded_pid NAME: the PID in RUNDIR/NAME/daemon.pid if that process still runs (same start time).
recorded_pid() {
    local f="$RUN/$1/daemon.pid" pid started
    [ -f "$f" ] || return 1
    read -r pid started <"$f" || [ -n "$pid" ] || return 1
    [ -n "$pid" ] && alive "$pid" && [ "$(start_time "$pid")" = "$started" ] && echo "$pid"
}

log_tail() { # log_tail NAME
    local f
    for f in "$RUN/$1"/*.log "$RUN/$1"/log/*log; do
        [ -s "$f" ] || continue
        echo "---- $f (last 30 lines)" >&2
        tail -n 30 "$f" >&2
    done
}

# ---------------------------------------------------------------------------------------------
# Postfix

start_postfix() { # start_postfix PORT
    local port=$1 d="$RUN/postfix"
    command -v postconf >/dev/null && command -v postfix >/dev/null ||
        { log "Postfix is not installed (apt-get install postfix)"; return 1; }
    mkdir -p "$d/etc" "$d/spool" "$d/data" || return 1
    : >"$d/etc/main.cf"
    if [ -f /usr/share/postfix/master.cf.dist ]; then
        cp /usr/share/postfix/master.cf.dist "$d/etc/master.cf"
    else
        cp /etc/postfix/master.cf "$d/etc/master.cf"
    fi || return 1
    local f
    for f in postfix-files postfix-files.d dynamicmaps.cf dynamicmaps.cf.d; do
        [ -e "/etc/postfix/$f" ] && cp -r "/etc/postfix/$f" "$d/etc/"
    done
    chown postfix "$d/data" || return 1
    postconf -c "$d/etc" -e \
        "queue_directory = $d/spool" \
        "data_directory = $d/data" \
        "meta_directory = $d/etc" \
        "maillog_file_prefixes = /var, /dev/stdout, $d" \
        "maillog_file = $d/postfix.log" \
        "syslog_name = pfx-$port" \
        "compatibility_level = 3.6" \
        "inet_interfaces = loopback-only" \
        "inet_protocols = ipv4" \
        "myhostname = $HOSTNAME_FQDN" \
        "mydomain = ${HOSTNAME_FQDN#*.}" \
        "mydestination =" \
        "alias_maps =" \
        "alias_database =" \
        "mynetworks = 127.0.0.0/8" \
        "relay_domains = $RELAY_DOMAIN" \
        "fast_flush_domains = \$relay_domains" \
        "smtpd_etrn_restrictions = permit_mynetworks, reject" \
        "relayhost = [127.0.0.1]:9" \
        "default_transport = error" \
        "smtp_tls_security_level = none" \
        "smtpd_tls_security_level = none" \
        "queue_run_delay = 1h" \
        "minimal_backoff_time = 1h" \
        "maximal_backoff_time = 2h" || return 1
    postconf -c "$d/etc" -MX smtp/inet || return 1
    postconf -c "$d/etc" -M "127.0.0.1:$port/inet=127.0.0.1:$port inet n - n - - smtpd" || return 1
    postconf -c "$d/etc" -F '*/*/chroot = n' || return 1
    postfix -c "$d/etc" post-install create-missing >/dev/null 2>&1
    # A first start right after the package install sometimes fails once: retry once.
    if ! postfix -c "$d/etc" start >>"$d/start.log" 2>&1; then
        log "postfix: first start failed, retrying once"
        tail -n 5 "$d/postfix.log" >&2 2>/dev/null
        postfix -c "$d/etc" stop >>"$d/start.log" 2>&1
        postfix -c "$d/etc" start >>"$d/start.log" 2>&1 || return 1
    fi
}

stop_postfix() {
    local d="$RUN/postfix" pid i
    [ -f "$d/etc/main.cf" ] || return 0
    pid=$(tr -dc 0-9 2>/dev/null <"$d/spool/pid/master.pid")
    if postfix -c "$d/etc" status >/dev/null 2>&1; then
        postfix -c "$d/etc" stop >/dev/null 2>&1
    fi
    [ -n "$pid" ] || return 0
    for i in $(seq 1 100); do alive "$pid" || return 0; sleep 0.05; done
    log "postfix master $pid still running after 5 s"
    return 1
}

# ---------------------------------------------------------------------------------------------
# Exim

# Patch a private copy of update-exim4.conf so that it reads the local macros and the mail name
# from the private confdir (the packaged script reads them from /etc).
prepare_exim_tools() {
    local u="$ROOT/usr/sbin/update-exim4.conf"
    sed -i -e 's|/etc/exim4/exim4.conf.localmacros|${UPEX4C_confdir}/exim4.conf.localmacros|g' \
        -e 's|< /etc/mailname|< ${UPEX4C_confdir}/mailname|' \
        -e "s|^EXIM=\"/usr/sbin/exim4\"|EXIM=\"$ROOT/usr/sbin/exim4\"|" "$u" || return 1
    grep -q '< /etc/mailname\|"/etc/exim4/exim4.conf.localmacros"' "$u" &&
        { log "update-exim4.conf: could not redirect its /etc paths"; return 1; }
    return 0
}

start_exim() { # start_exim NAME PORT VARIANT (default | acl | command)
    local name=$1 port=$2 variant=$3 d="$RUN/$1"
    local conf="$d/conf" exim="$ROOT/usr/sbin/exim4"
    mkdir -p "$conf" "$d/spool" "$d/log" || return 1
    cp -r "$ROOT/etc/exim4/." "$conf/" || return 1
    chown -R "$(account_ids Debian-exim)" "$d/spool" "$d/log" || return 1
    echo "$HOSTNAME_FQDN" >"$conf/mailname"
    # Mail for a.example goes to 127.0.0.1 port 9, where nothing listens: it stays deferred
    # (Debian's hubbed_hosts router; "::" is a colon in the host list).
    echo "$RELAY_DOMAIN: 127.0.0.1::9" >"$conf/hubbed_hosts"
    cat >"$conf/update-exim4.conf.conf" <<EOF
dc_eximconfig_configtype='internet'
dc_other_hostnames=''
dc_local_interfaces='127.0.0.1.$port'
dc_readhost=''
dc_relay_domains='$RELAY_DOMAIN'
dc_minimaldns='false'
dc_relay_nets=''
dc_smarthost=''
CFILEMODE='644'
dc_use_split_config='false'
dc_hide_mailname=''
dc_mailname_in_oh='true'
dc_localdelivery='mail_spool'
EOF
    {
        echo "CONFDIR = $conf"
        echo "SPOOLDIR = $d/spool"
        echo "MAIN_HARDCODE_PRIMARY_HOSTNAME = $HOSTNAME_FQDN"
        # Exim empties its environment at start; keep the path to extracted libraries for the
        # copies of itself it runs (queue runs started by ETRN).
        echo "MAIN_KEEP_ENVIRONMENT = LD_LIBRARY_PATH"
        echo "log_file_path = $d/log/%slog"
        case $variant in
        acl)
            echo "acl_smtp_etrn = acl_etrn"
            ;;
        command)
            echo "acl_smtp_etrn = acl_etrn"
            # The lookup (ret=key) gives an untainted value, so the command passes the taint check;
            # a domain not in hubbed_hosts fails the expansion (458).
            echo "smtp_etrn_command = $conf/etrn-queue-run \${lookup{\$domain}lsearch,ret=key{$conf/hubbed_hosts}{\$value}fail}"
            ;;
        esac
    } >"$conf/exim4.conf.localmacros"
    # exim_path: ETRN #queue and the ETRN command run this binary again.
    sed -i "s|^exim_path = .*|exim_path = $exim|" "$conf/exim4.conf.template" || return 1
    if [ "$variant" != default ]; then
        sed -i '/^begin acl$/a\
\
# ETRN: accepted from loopback only (added by real-mtas.sh)\
acl_etrn:\
  accept hosts = 127.0.0.0/8\
  deny' "$conf/exim4.conf.template" || return 1
    fi
    if [ "$variant" = command ]; then
        cat >"$conf/etrn-queue-run" <<EOF
#!/bin/sh
# smtp_etrn_command of $name: a queue run for the domain, then a hold of $ETRN_HOLD s. Exim keeps
# the ETRN serialised (458 Already processing DOMAIN) until this command ends.
"$exim" -C "$d/exim4.conf" -R "\$1"
exec sleep $ETRN_HOLD
EOF
        chmod 755 "$conf/etrn-queue-run"
    fi
    ns_run sh "$ROOT/usr/sbin/update-exim4.conf" -d "$conf" -o "$d/exim4.conf" >>"$d/build.log" 2>&1 || return 1
    chown root:root "$d/exim4.conf" && chmod 644 "$d/exim4.conf" || return 1
    ns_run "$exim" -C "$d/exim4.conf" -bV >>"$d/build.log" 2>&1 || return 1
    ns_daemon "$name" "$d/daemon.log" "$exim" -C "$d/exim4.conf" -bdf -oP "$d/exim.pid"
}

# ---------------------------------------------------------------------------------------------
# sendmail

start_sendmail() { # start_sendmail PORT
    local port=$1 d="$RUN/sendmail"
    local mail="$d/mail" share="$ROOT/usr/share/sendmail" bin="$ROOT/usr/libexec/sendmail"
    mkdir -p "$d/lib/host_status" "$d/run" "$d/mqueue" || return 1
    chmod 700 "$d/mqueue"
    cp -r "$ROOT/etc/mail" "$mail" || return 1
    mkdir -p "$mail/m4" && : >"$mail/m4/dialup.m4" && : >"$mail/m4/provider.m4"
    # The m4 tree includes files by absolute path: point them at the extracted tree.
    grep -rl '/usr/share/sendmail' "$share/cf" | xargs -r sed -i "s|\([^/]\)/usr/share/sendmail|\1$share|g"
    # Debian's sendmail.mc with one daemon on 127.0.0.1:PORT (instead of :25 and :587), relayed mail
    # sent to 127.0.0.1 port 9 (nothing listens: it stays deferred).
    sed -e "s|/etc/mail/|$mail/|g" \
        -e '/^DAEMON_OPTIONS(/d' \
        -e "/^FEATURE(\`no_default_msa')/a\\
DAEMON_OPTIONS(\`Family=inet, Name=MTA-v4, Port=$port, Addr=127.0.0.1')dnl" \
        -e "/^MAILER_DEFINITIONS/i\\
define(\`SMART_HOST', \`relay:[127.0.0.1]')dnl\\
define(\`RELAY_MAILER_ARGS', \`TCP \$h 9')dnl" \
        "$share/cf/debian/sendmail.mc" >"$d/sendmail.mc" || return 1
    "$ROOT/usr/bin/m4" "$d/sendmail.mc" >"$d/sendmail.cf.m4out" 2>"$d/build.log" || return 1
    sed -e "s|/etc/mail/|$mail/|g" \
        -e "s|/var/lib/sendmail|$d/lib|g" \
        -e "s|/var/run/sendmail/mta|$d/run|g" \
        -e "s|/var/spool/mqueue|$d/mqueue|g" \
        -e "s|/usr/libexec/sendmail|$bin|g" \
        "$d/sendmail.cf.m4out" >"$d/sendmail.cf" || return 1
    rm -f "$d/sendmail.cf.m4out"
    # Debian's default databases: relay for a.example; the access map is Debian's example without
    # its GreetPause lines (they would turn the pause off for 127.* and set 5 s for others), so the
    # 1000 ms of sendmail.mc applies; 127.* stays exempt from the rate and connection limits.
    echo "$RELAY_DOMAIN" >"$mail/relay-domains"
    printf 'localhost\n%s\n' "$HOSTNAME_FQDN" >"$mail/local-host-names"
    : >"$mail/trusted-users"
    grep -v '^GreetPause:' "$share/examples/db/access" >"$mail/access"
    cp "$share/examples/db/aliases" "$mail/aliases"
    : >"$d/lib/sendmail.st"
    chmod 644 "$d/sendmail.cf" "$mail/access" "$mail/aliases" "$mail/relay-domains" "$mail/local-host-names"
    ns_run "$bin/makemap" -C "$d/sendmail.cf" hash "$mail/access" <"$mail/access" >>"$d/build.log" 2>&1 || return 1
    ns_run "$bin/sendmail" -C "$d/sendmail.cf" -bi >>"$d/build.log" 2>&1 || return 1
    ns_daemon sendmail "$d/daemon.log" "$bin/sendmail" -C "$d/sendmail.cf" -bD
}

# ---------------------------------------------------------------------------------------------
# stop

stop_daemon() { # stop_daemon NAME: the daemon started by ns_daemon and its process group
    local f="$RUN/$1/daemon.pid" pid pgid i
    [ -f "$f" ] || return 0
    if pid=$(recorded_pid "$1"); then
        pgid=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f3)
        if [ "$pgid" = "$pid" ]; then kill -TERM -- "-$pid" 2>/dev/null; else kill -TERM "$pid" 2>/dev/null; fi
        for i in $(seq 1 100); do
            alive "$pid" || break
            sleep 0.05
        done
        if alive "$pid"; then
            log "$1: pid $pid did not exit after TERM within 5 s; sending KILL"
            if [ "$pgid" = "$pid" ]; then kill -KILL -- "-$pid" 2>/dev/null; else kill -KILL "$pid" 2>/dev/null; fi
        fi
        # the rest of its process group (queue runs, an ETRN hold)
        [ "$pgid" = "$pid" ] && kill -KILL -- "-$pid" 2>/dev/null
    fi
    rm -f "$f"
    return 0
}

stop_all() {
    local name rc=0
    for name in $SERVERS; do
        case $name in
        postfix) stop_postfix || rc=1 ;;
        *) stop_daemon "$name" || rc=1 ;;
        esac
    done
    rm -f "$RUN/servers.txt"
    return $rc
}

cmd_stop() {
    [ $# -eq 1 ] || usage
    need_root
    [ -d "$1" ] || { log "nothing to stop: no folder $1"; return 0; }
    RUN=$(abs_dir "$1")
    stop_all
}

# ---------------------------------------------------------------------------------------------
# start

running_any() {
    local name
    if [ -f "$RUN/postfix/etc/main.cf" ] && postfix -c "$RUN/postfix/etc" status >/dev/null 2>&1; then return 0; fi
    for name in $SERVERS; do
        recorded_pid "$name" >/dev/null && return 0
    done
    return 1
}

# Everything start runs writes to stderr; only the server list goes to stdout.
cmd_start() {
    [ $# -eq 2 ] || usage
    start_servers "$@" >&2 || exit 1
    cat "$RUN/servers.txt"
}

start_servers() {
    need_root
    local debdir; debdir=$(abs_dir "$1")
    mkdir -p "$2" || die "cannot create $2"
    RUN=$(abs_dir "$2")
    ROOT="$RUN/root"
    PRIV="$RUN/etc"
    command -v unshare >/dev/null && command -v setsid >/dev/null || die "unshare and setsid (util-linux) are needed"
    unshare --mount --uts --propagation private true 2>/dev/null ||
        die "cannot make a private mount namespace (unshare --mount --uts --propagation private); / must be a mount point (in a chroot: mount --bind the chroot onto itself first)"
    if running_any; then
        die "servers from an earlier start are running in $RUN: run 'real-mtas.sh stop $RUN' first"
    fi
    # The daemons' users (postfix, Debian-exim, nobody) must reach their folders in RUNDIR.
    chmod 755 "$RUN"
    setpriv --reuid=65534 --regid=65534 --clear-groups test -x "$RUN" 2>/dev/null ||
        die "$RUN is not reachable for other users (a parent folder lacks o+x)"
    local name deb
    rm -rf "$ROOT" "$PRIV" "$RUN/servers.txt"
    for name in $SERVERS; do rm -rf "${RUN:?}/$name"; mkdir -p "$RUN/$name"; done
    mkdir -p "$ROOT"
    for deb in "$debdir"/*.deb; do
        [ -f "$deb" ] || continue
        dpkg-deb -x "$deb" "$ROOT" || die "dpkg-deb -x $deb failed"
    done
    [ -x "$ROOT/usr/sbin/exim4" ] && [ -x "$ROOT/usr/libexec/sendmail/sendmail" ] && [ -x "$ROOT/usr/bin/m4" ] ||
        die "exim4, sendmail or m4 missing in $debdir: run 'real-mtas.sh fetch $debdir' first"
    # No set-uid or set-gid bits in the private copy.
    find "$ROOT" -type f -perm /6000 -exec chmod ug-s {} +
    LIBPATH=$(lib_path "$ROOT")
    make_private_etc
    prepare_exim_tools || die "cannot prepare update-exim4.conf"

    local ports
    mapfile -t ports < <(free_ports 5)
    [ ${#ports[@]} -eq 5 ] || die "could not find 5 free loopback ports"
    declare -A port
    local i=0
    for name in $SERVERS; do port[$name]=${ports[$i]}; i=$((i + 1)); done

    trap 'log "interrupted"; stop_all; exit 1' INT TERM
    local failed=
    for name in $SERVERS; do
        case $name in
        postfix) start_postfix "${port[$name]}" ;;
        exim) start_exim "$name" "${port[$name]}" acl ;;
        exim-default) start_exim "$name" "${port[$name]}" default ;;
        exim-etrn-command) start_exim "$name" "${port[$name]}" command ;;
        sendmail) start_sendmail "${port[$name]}" ;;
        esac || { failed=$name; break; }
    done
    if [ -z "$failed" ]; then
        for name in $SERVERS; do
            wait_greeting "$name" "${port[$name]}" || { failed=$name; break; }
        done
    fi
    if [ -n "$failed" ]; then
        log "$failed did not start (port ${port[$failed]})"
        log_tail "$failed"
        stop_all
        exit 1
    fi
    : >"$RUN/servers.txt"
    for name in $SERVERS; do
        echo "$name 127.0.0.1:${port[$name]}" >>"$RUN/servers.txt"
    done
    trap - INT TERM
}

case "${1:-}" in
fetch) shift; cmd_fetch "$@" ;;
start) shift; cmd_start "$@" ;;
stop) shift; cmd_stop "$@" ;;
*) usage ;;
esac
