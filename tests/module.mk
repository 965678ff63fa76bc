# tests/: every subfolder with a module.mk (fuzz/, guests/, ...) adds its rules.
-include $(wildcard tests/*/module.mk)
