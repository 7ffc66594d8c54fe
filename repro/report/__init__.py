"""Reports stage: tables, figures and the fidelity grade against the published numbers."""
