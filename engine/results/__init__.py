"""What a run leaves behind: the record of one result (:mod:`.record`), atomic file writes
(:mod:`.files`), export of a result's files (:mod:`.export`), reports (:mod:`.report`), ``.fgvis`` review
sessions (:mod:`.session`), folder batches (:mod:`.batch`) and the same batch on a Ray cluster
(:mod:`.cluster`)."""
