//! API keys: who may call the service, and what each may spend.
