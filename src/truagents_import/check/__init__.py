"""The triage ladder: did the files arrive, and are they the shape we expect?"""
