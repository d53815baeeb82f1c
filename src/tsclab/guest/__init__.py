"""The real guest: a stock Linux kernel under QEMU, paused for real and watched."""
