#!/bin/sh
# Writes rmq(3) to stdout: a man page whose body is rmq.h itself, the whole
# API and its manual (every function: what it does, ownership, threads,
# errors). Usage: tools/manpage.sh rmq.h VERSION
set -e
hdr=$1
version=$2
cat <<HEAD
.TH RMQ 3 "" "rmq $version" "rmq manual"
.SH NAME
rmq \- Apache RocketMQ's message model as an embeddable C library
.SH SYNOPSIS
.nf
.B #include <rmq.h>
.PP
cc app.c \$(pkg-config \-\-cflags \-\-libs rmq)
.fi
.SH DESCRIPTION
rmq opens a store directory in RocketMQ's on-disk format (CommitLog,
ConsumeQueue, config files) and gives the process topics with message
queues, producers, push and pull consumers in consumer groups, tag and
SQL92 filters, delayed messages and retries, with no broker process and no
network. Every call returns an
.B RMQ_OK
or an
.B RMQ_E*
code;
.BR rmq_errstr ()
names a code and
.BR rmq_errmsg ()
gives the calling thread's last message.
.PP
The header below is the reference: each declaration is preceded by what
it does, who owns what, which threads may call it and which errors it
returns. The README of the source distribution is the user's guide.
.SH THE HEADER
.nf
HEAD
# Man-page text: backslashes escaped, lines that would read as requests kept literal.
sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/" "$hdr"
cat <<TAIL
.fi
.SH SEE ALSO
https://rocketmq.apache.org/ for the model rmq follows.
TAIL
