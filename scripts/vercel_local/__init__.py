"""vercel-local: an offline emulation of the Vercel Sandbox API (v2 sessions, POST /v3/sandboxes).

Modules: server (CLI, auth, error bodies; the rest of the HTTP server is daytona_local's),
api (routes), store (sandboxes, sessions, snapshots, lifecycle), commands (processes, output
log, NDJSON), tarball (fs/write archives), runtime (daytona_local's runtime with Vercel's
image layout and default user).
"""
