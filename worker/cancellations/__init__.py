"""Cancelling stamped invoices at SAT through Finkok (issue 16).

    door (request_cancellation: one service for the CLI, the API and the broker task)
      └─ cancellations row "requested" ──commit──▶ ring billing.send_cancellation(id)
    send: claim (CAS + lease) ─▶ sign + cancel_signature (no tx open) ─▶ settle (fenced)
    poll: the beat's billing.poll_cancellations asks get_sat_status for in_process rows
          (with backoff) until SAT says Cancelado or Solicitud rechazada; it also sends
          requested rows that are due and takes over sends whose lease expired.

Modules: ``csds`` (the signing CSD per emisor RFC), ``door`` (the request), ``policy``
(Finkok's answers as a pure table), ``sending`` and ``polling`` (the two workers),
``tasks`` (Celery shells).
"""
