#include "guest.h"
const char guest_name[] = "hlt";
int main(void) { return 1; }
