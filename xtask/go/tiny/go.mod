// Tiny static programs for the images the testenv node runs: the pod sandbox ("pause") and the
// user's-guide application ("printenv"). Standard library only.
module eso-testenv/tiny

go 1.24.0
