# A stand-in for a container stage whose real image is the user's (the fraud example's
# card-actions and notifier): it prints what it was asked to do and succeeds. The example
# calls card-actions as `/card-actions block ...`, so that path answers too.
FROM busybox:1.36.1
RUN printf '#!/bin/sh\necho "stand-in $0 $*"\n' > /stand-in \
 && chmod 0755 /stand-in \
 && ln -s /stand-in /card-actions
USER 65532:65532
ENTRYPOINT ["/stand-in"]
