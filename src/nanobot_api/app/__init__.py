"""The application layer.

Modules directly in ``app/`` are use cases: a chat turn (``chat.py``), attachments,
the ``message`` tool and its outbox, session administration, the agents. They import
the domain and, through ports, nothing else.

``app/wiring/`` is the composition root and serving: ``bootstrap.build`` puts adapters
and use cases together, ``serving`` and ``live_server`` run the result with Hypercorn,
``library`` is the same for a user's own agent, ``commands`` runs the CLI's commands.
Only wiring imports adapters by name.
"""
