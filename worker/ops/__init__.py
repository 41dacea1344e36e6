"""Operations: what a person on call needs, as plain functions over a session.

``filters`` (the shared filter vocabulary), ``queries`` (list and show invoices),
``reprocess`` (reprocess invoices, resend notifications), ``stats`` (the numbers to check
first) and ``flower`` (how Flower is started). The CLI in ``worker.cli`` is a thin layer.
"""
