"""Site databases: provisioning per engine behind one protocol (postgres, mysql), the console,
dumps, and Director's requests about them."""
