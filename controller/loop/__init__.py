"""The reconciliation loop: controller, reconciler, resync, executor, status writer,
restart gate, watchers, leadership, work queue. Talks to the world through the gateways."""
