#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
cs=/sys/devices/system/clocksource/clocksource0
want=$(sed -n 's/.*clocksource=\([^ ]*\).*/\1/p' /proc/cmdline)
n=0
while [ -n "$want" ] && [ "$(cat $cs/current_clocksource)" != "$want" ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done
echo "C $(cat $cs/current_clocksource) $(cat $cs/available_clocksource)" > /dev/ttyS1
echo "U $(cat /proc/cmdline)" > /dev/ttyS1
echo "G $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2)" > /dev/ttyS1
exec /probe 10 20 > /dev/ttyS1
