"""The local Finkok's behaviour (used by ``worker.sandbox.finkok``): configuration,
memory of stamped documents, and one module per Finkok service."""
