"""Mail platforms behind one interface (`base.Provider`); `registry` creates them by name."""
