/* The compat-caller check's program for x86_64 kernels: 32-bit (i386) code
 * that forks a child and never reaps it. It waits with
 * waitid(P_PID, child, NULL, WEXITED|WNOWAIT, NULL) until the child is a
 * zombie (the kernel's sched_process_wait sees it; nothing is reaped),
 * then calls chroot(NULL), whose i386 number, 61, is x86_64's wait4: a
 * tracer that read 32-bit calls by the 64-bit table would record a failed
 * wait4 there. Built with `as --32` and `ld -m elf_i386`: no C library. */
	.text
	.globl _start
_start:
	movl $2, %eax		/* fork */
	int $0x80
	testl %eax, %eax
	jz child
	js fail
	movl %eax, %ecx		/* the child's pid */
	movl $1, %ebx		/* P_PID */
	xorl %edx, %edx		/* no siginfo */
	movl $0x01000004, %esi	/* WEXITED | WNOWAIT */
	xorl %edi, %edi		/* no rusage */
	movl $284, %eax		/* waitid */
	int $0x80
	testl %eax, %eax
	jnz fail
	xorl %ebx, %ebx		/* chroot(NULL): EFAULT */
	movl $61, %eax
	int $0x80
	xorl %ebx, %ebx
	jmp exit
child:
	xorl %ebx, %ebx
	jmp exit
fail:
	movl $1, %ebx
exit:
	movl $252, %eax		/* exit_group */
	int $0x80
