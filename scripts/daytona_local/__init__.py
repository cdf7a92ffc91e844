"""daytona-local: an offline emulation of the Daytona API (control plane and toolbox).

Modules: httpcore (HTTP/1.1 machinery), server (CLI, routing, auth, /_local knobs), store
(persistent state and lifecycle), controlplane (/api routes), faults (fault injection),
socketio (event stream for the SDKs), toolbox/runtime/multipart (the in-sandbox API).
"""
