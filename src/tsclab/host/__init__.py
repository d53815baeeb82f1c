"""The host side: physical hosts and KVM's semantics, as the guest sees them."""
