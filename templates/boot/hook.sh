#!/bin/sh
# The vocc boot hook: applies a node's configuration from its config drive to its
# root file system before the root's init starts. POSIX sh; runs under busybox in the
# vocc initramfs, and works the same from any shell that has cp, sed, awk and mkswap.
#
#   hook.sh DRIVE ROOT     DRIVE: the mounted config drive; ROOT: the mounted root
#
# The drive holds:
#   vocc/node.env      VOCC_NODE, VOCC_HOSTNAME, VOCC_FQDN, VOCC_ROLE, VOCC_CLUSTER,
#                      VOCC_ENABLE and VOCC_DISABLE (systemd units), VOCC_NET (fixed
#                      addresses, see below), VOCC_SECRETS (the batch system's
#                      secrets, see below), as shell assignments
#   vocc/files/...     the node's files, at their place in the guest (etc/hostname,
#                      etc/hosts, etc/fstab, etc/network/interfaces, etc/exports,
#                      etc/slurm/slurm.conf, etc/munge/munge.key, etc/vocc/services:
#                      the batch system daemons to start or keep off, ...)
#   meta-data, user-data, network-config   for cloud-init (not used here)
#
# It prints `vocc: configured NODE` when done; the root's init prints the readiness
# marker `vocc: ready NODE` once the node is up (busybox rcS, or vocc-ready.service).

set -u
drive="$1"
root="$2"

say() { echo "vocc: $*"; }

VOCC_NODE=
VOCC_HOSTNAME=
VOCC_ENABLE=
VOCC_DISABLE=
VOCC_NET=
VOCC_SECRETS=
. "$drive/vocc/node.env" || exit 1

# The files, over what the layer has.
if [ -d "$drive/vocc/files" ]; then
	cp -a "$drive/vocc/files/." "$root/" || exit 1
fi
mkdir -p "$root/etc/vocc"
cp "$drive/vocc/node.env" "$root/etc/vocc/node.env"

# Disk names: the files name disks as the cluster's hypervisor does (xvdb under Xen,
# vdb under KVM). Booted under the other one, rename them in fstab.
if [ -f "$root/etc/fstab" ]; then
	if [ ! -b /dev/xvda ] && [ -b /dev/vda ]; then
		sed -i 's#^/dev/xvd#/dev/vd#' "$root/etc/fstab"
	elif [ ! -b /dev/vda ] && [ -b /dev/xvda ]; then
		sed -i 's#^/dev/vd#/dev/xvd#' "$root/etc/fstab"
	fi
fi

# Host name, for the kernel now and for the root's init.
if [ -n "$VOCC_HOSTNAME" ]; then
	hostname "$VOCC_HOSTNAME" 2>/dev/null
	[ -f "$root/etc/hostname" ] || echo "$VOCC_HOSTNAME" >"$root/etc/hostname"
fi

# exports writes some characters of a path (`"#()`) as a backslash and three octal
# digits, as exportfs reads them: decode each line of the input the same way. (Guest
# paths hold no backslash and no white space, so fstab needs no escapes.)
unoctal() {
	awk '{
		out = ""; s = $0
		while (match(s, /\\[0-7][0-7][0-7]/)) {
			n = substr(s, RSTART + 1, 1) * 64 + substr(s, RSTART + 2, 1) * 8 + substr(s, RSTART + 3, 1)
			out = out substr(s, 1, RSTART - 1) sprintf("%c", n)
			s = substr(s, RSTART + 4)
		}
		print out s
	}'
}

# Mount points and exported directories must exist.
if [ -f "$root/etc/fstab" ]; then
	awk '!/^#/ && NF >= 3 && $2 ~ /^\// { print $2 }' "$root/etc/fstab" |
		while read -r dir; do mkdir -p "$root$dir"; done
fi
if [ -f "$root/etc/exports" ]; then
	awk '!/^#/ && $1 ~ /^\// { print $1 }' "$root/etc/exports" | unoctal |
		while read -r dir; do mkdir -p "$root$dir"; done
fi

# Swap disks are blank when vocc makes them: give each a swap signature once.
if [ -f "$root/etc/fstab" ]; then
	awk '!/^#/ && $3 == "swap" { print $1 }' "$root/etc/fstab" |
		while read -r dev; do
			[ -b "$dev" ] || continue
			sig=$(dd if="$dev" bs=1 skip=4086 count=10 2>/dev/null)
			[ "$sig" = "SWAPSPACE2" ] || mkswap "$dev" >/dev/null
		done
fi

# Local disks of fstab (data disks, swap) in place now: the root's init finds them
# mounted and active instead of waiting for udev to announce each device, which under
# emulation comes tens of seconds into boot.
if [ -f "$root/etc/fstab" ]; then
	while read -r dev dir type opts rest; do
		case "$dev" in '' | '#'*) continue ;; esac
		[ -b "$dev" ] || continue
		case "$type" in
		swap) swapon "$dev" 2>/dev/null ;;
		ext4)
			mode=rw
			case ",$opts," in *,ro,*) mode=ro ;; esac
			mkdir -p "$root$dir"
			mount -t ext4 -o "$mode" "$dev" "$root$dir" 2>/dev/null ||
				say "cannot mount $dev at $dir"
			;;
		esac
	done <"$root/etc/fstab"
fi

# The batch system's secrets (VOCC_SECRETS: PATH:USER ..., such as the munge key)
# belong to their daemon's user, and nobody else may read them.
for secret in $VOCC_SECRETS; do
	key="$root${secret%:*}"
	[ -f "$key" ] || continue
	owner=$(awk -F: -v user="${secret##*:}" '$1 == user { print $3 ":" $4 }' \
		"$root/etc/passwd" 2>/dev/null)
	[ -n "$owner" ] && chown "$owner" "$key"
	chmod 0400 "$key"
done

# Services this node runs or does not run (a shared layer installs the services of
# every role): VOCC_ENABLE and VOCC_DISABLE, and the batch system's daemons in
# etc/vocc/services (`on|off NAME...`, one daemon per line, under every name its
# packagings give its service). A service is a systemd unit, or a SysV script that
# systemd's generator runs when rc2.d-rc5.d start it. Changing the links before PID 1
# starts needs no daemon-reload.
wants="$root/etc/systemd/system/multi-user.target.wants"
# enable NAME: start the service at boot; false when the layer has no such service.
enable() {
	for dir in lib/systemd/system usr/lib/systemd/system etc/systemd/system; do
		if [ -f "$root/$dir/$1.service" ]; then
			mkdir -p "$wants"
			ln -sf "/$dir/$1.service" "$wants/$1.service"
			return 0
		fi
	done
	[ -f "$root/etc/init.d/$1" ] || return 1
	for level in 2 3 4 5; do
		started "$level" "$1" >/dev/null && continue
		mkdir -p "$root/etc/rc$level.d"
		ln -s "../init.d/$1" "$root/etc/rc$level.d/S01$1"
	done
}
# started LEVEL NAME: print the links that start the SysV script NAME in LEVEL.
started() {
	found=1
	for link in "$root/etc/rc$1.d"/S[0-9][0-9]"$2"; do
		[ -L "$link" ] || [ -e "$link" ] || continue
		echo "$link"
		found=0
	done
	return $found
}
# disable NAME: keep the service from starting at boot.
disable() {
	rm -f "$wants/$1.service"
	for level in 2 3 4 5; do
		started "$level" "$1" | while read -r link; do rm -f "$link"; done
	done
}
if [ -d "$root/etc/systemd/system" ]; then
	for unit in $VOCC_DISABLE; do
		disable "$unit"
	done
	for unit in $VOCC_ENABLE; do
		enable "$unit"
	done
	if [ -f "$root/etc/vocc/services" ]; then
		while read -r state names; do
			case "$state" in
			off) for name in $names; do disable "$name"; done ;;
			on)
				for name in $names; do
					enable "$name" && break
				done || say "this layer has none of the services $names"
				;;
			esac
		done <"$root/etc/vocc/services"
	fi
fi

# Fixed addresses (VOCC_NET: NAME,MAC,ADDRESS/PREFIX,GATEWAY ...), set now, when the
# layer has systemd-networkd: under emulation udev hands a NIC to networkd tens of
# seconds into boot, and every service ordered after the network would wait for it.
# With every address in place before PID 1 there is nothing left for networkd to do,
# and it does not run; a node with a DHCP or external address runs it as usual.
link_for() {
	for d in /sys/class/net/*; do
		[ "$(cat "$d/address" 2>/dev/null)" = "$1" ] && {
			echo "${d##*/}"
			return 0
		}
	done
	return 1
}
early() {
	routed=
	for spec in $VOCC_NET; do
		IFS=,
		set -- $spec
		unset IFS
		mac="$2" address="$3" gateway="$4"
		i=0
		until dev=$(link_for "$mac"); do
			i=$((i + 1))
			[ "$i" -gt 50 ] && return 1
			sleep 0.1
		done
		ip link set "$dev" up || return 1
		ip addr add "$address" dev "$dev" || return 1
		if [ "$gateway" != - ] && [ -z "$routed" ]; then
			ip route add default via "$gateway" dev "$dev" proto static || return 1
			routed=1
		fi
	done
}
system="$root/etc/systemd/system"
networkd="multi-user.target.wants/systemd-networkd.service
sockets.target.wants/systemd-networkd.socket
network-online.target.wants/systemd-networkd-wait-online.service"
if [ -f "$root/lib/systemd/system/systemd-networkd.service" ]; then
	if [ -n "$VOCC_NET" ] && early; then
		for link in $networkd; do
			rm -f "$system/$link"
		done
	else
		[ -n "$VOCC_NET" ] && say "could not set the addresses early: systemd-networkd will"
		for link in $networkd; do
			mkdir -p "$system/${link%/*}"
			ln -sf "/lib/systemd/system/${link#*/}" "$system/$link"
		done
	fi
fi

say "configured $VOCC_NODE"
