"""The appliance process and its wiring: the daemon and its policies, the configuration, systemd notify."""
